"""One run layout: run/layout.py names every artifact path, and a real cell's artifacts and
predictions are where it says."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from mlflow.tracking import MlflowClient

import mribench
from mribench import tracking
from mribench.config.suite_file import load_suite
from mribench.run import layout
from mribench.run.suite import SuiteOptions, run_suite
from real_data import mri_7023
from source_strings import string_literals

PKG = Path(mribench.__file__).resolve().parent
# the top folders of a run's artifacts
ARTIFACT = re.compile(r"^(metrics|plots|data|explanations|robustness|external|config|summary|"
                      r"report)/")


def test_no_artifact_path_is_spelt_outside_the_layout():
    found = [f"{path.relative_to(PKG)}:{line}: {text!r}"
             for path in sorted(PKG.rglob("*.py")) if path != PKG / "run" / "layout.py"
             for line, text in string_literals(ast.parse(path.read_text())) if ARTIFACT.match(text)]
    assert found == [], "artifact paths outside run/layout.py:\n" + "\n".join(found)


def test_a_cells_artifacts_and_clean_flags_are_where_the_layout_says(
        mlflow_store, smoke_data_dir, tmp_path, monkeypatch, weights_dir):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", {"experiment": "layout", "explain.methods": [],
                                 "models": [{"name": "test_resnet"}], "strategies": ["frozen"],
                                 "datasets": [{"name": mri_7023()[0], "subset_per_class": 6,
                                               "dedup": "exact"}]})
    assert run_suite(suite, SuiteOptions(device="cpu", data_dir=str(smoke_data_dir))) == 0
    exp_id = tracking.experiment_id_of("layout")
    runs = tracking.search_cells(exp_id)
    assert len(runs) == 1
    run = runs.iloc[0]
    client = MlflowClient()

    def listed(folder: str) -> set[str]:
        return {f.path for f in client.list_artifacts(run["run_id"], folder)}

    written = set().union(*(listed(f) for f in ("config", "data", "metrics", "plots")))
    expected = {layout.RESOLVED_CONFIG, layout.AUDIT_SUMMARY, layout.COMPOSITION,
                layout.split_file("split"), layout.PREDICTIONS,
                layout.learning_curves_file(), *(
                    path for prefix in (layout.TEST, layout.TEST_CLEAN) for path in (
                        layout.metrics_file("confusion_matrix", prefix, "csv"),
                        layout.metrics_file("reliability", prefix, "csv", "_calibrated"),
                        layout.plot_file("reliability", prefix)))}
    assert expected <= written, sorted(expected - written)

    frame = tracking.load_predictions(run["run_id"])
    assert layout.has_clean_flags(frame)
    clean = layout.in_subset(frame, layout.CLEAN)
    full = layout.in_subset(frame, layout.FULL)
    # the logged counts of each subset are the rows the reader gives back for it
    assert len(full) == int(run[f"{layout.TEST}_n"])
    assert len(clean) == int(run[f"{layout.TEST_CLEAN}_n"]) <= len(full)
    assert tracking.load_predictions(run["run_id"], layout.ROBUST_PREDICTIONS) is None


def test_the_clean_mask_marks_the_samples_of_the_clean_test():
    from mribench.data.samples import Sample

    test = [Sample(Path(f"/d/{n}.png"), 0) for n in "abcd"]
    subsets, clean = layout.scored_subsets(test, [test[1], test[3]])
    assert clean.tolist() == [False, True, False, True]
    assert {k: v.tolist() for k, v in subsets.items()} == {
        "test": [True] * 4, "test_clean": [False, True, False, True]}
    # every test image leaked: no clean subset is scored, the flags still say so
    subsets, clean = layout.scored_subsets(test, [])
    assert list(subsets) == ["test"] and not clean.any()
    # not deduplicated: no clean flags at all
    subsets, clean = layout.scored_subsets(test, None)
    assert list(subsets) == ["test"] and clean is None
