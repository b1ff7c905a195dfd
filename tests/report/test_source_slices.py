"""The report's per-source slices and metadata baseline, from a tiny real suite: two file-name
families (sources) of real MRI slices, a random hold-out split beside one that holds a family
out of training (an axis over split.hold_out), a tiny model, two seeds."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mribench.config.suite_file import load_suite
from mribench.data.registry import SAMPLE_DIR
from mribench.report.summary import report
from mribench.run.suite import SuiteOptions, run_suite

SUITE = {
    "name": "sources", "experiment": "source-slices-test",
    "split": {"protocol": "holdout", "groups": "exact", "test_fraction": 0.4},
    "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0, 1],
    "preprocess": {"image_size": 32}, "training": {"epochs": 1, "batch_size": 8},
    "explain": {"methods": []},
    "axes": {"split.hold_out": [None, {"value": {"source": ["web_N"]}}]},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slices")
    files = sorted(SAMPLE_DIR.rglob("*.jpg"))[:48]
    for i, path in enumerate(files):  # class from the folder, family alternating within it
        folder = tmp / "set" / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{('scanner', 'web')[i % 2]}_{i}.jpg").write_bytes(path.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("BENCHMARK_CACHE_DIR", str(tmp / "cache"))
        suite = load_suite("smoke", {**SUITE, "datasets": [
            {"name": "families", "root": str(tmp / "set"), "near_bits": 0}]})
        assert run_suite(suite, SuiteOptions(device="cpu")) == 0
        path = tmp / "s.yaml"
        path.write_text(json.dumps(suite.model_dump(mode="json", exclude_none=True)))
        out = tmp / "json.txt"
        with out.open("w") as fh, pytest.MonkeyPatch.context() as m2:
            import sys
            m2.setattr(sys, "stdout", fh)
            assert report(str(path), None, as_json=True, out=str(tmp / "out")) == 0
        runs = MlflowClient().search_runs(
            [MlflowClient().get_experiment_by_name("source-slices-test").experiment_id],
            "tags.role = 'cell'")
    return {"json": json.loads(out.read_text()), "runs": runs, "out": tmp / "out"}


def test_slices_are_the_per_source_accuracy_of_the_predictions(built):
    rows = built["json"]["slices"]
    random = [r for r in rows if "None" in r["config"] and r["slice"] == "source"]
    assert {r["value"] for r in random} == {"scanner_N", "web_N"}
    # the same figure from the cells' predictions directly: mean over seeds of per-seed accuracy
    client = MlflowClient()
    for row in random:
        per_seed = []
        for run in built["runs"]:
            if "source" in run.data.tags.get("axes", "") and "None" not in run.data.tags["axes"]:
                continue
            frame = pd.read_csv(client.download_artifacts(run.info.run_id, "metrics/predictions.csv"))
            part = frame[(frame["source"] == row["value"]) & frame["clean"]]
            per_seed.append((part["true"] == part["pred"]).mean())
        assert row["accuracy"] == pytest.approx(sum(per_seed) / len(per_seed), abs=0.02)
        assert row["accuracy_ci95"][0] <= row["accuracy"] <= row["accuracy_ci95"][1]
    # holding web out leaves one source in its test: no slice to show
    assert not [r for r in rows if "web_N" in r["config"] and r["slice"] == "source"]
    assert (built["out"] / "slices.csv").is_file()


def test_metadata_baseline_sits_beside_the_models(built):
    for row in built["json"]["rows"]:
        logged = [r.data.metrics["metadata_baseline_test_accuracy"] for r in built["runs"]
                  if (("web_N" in r.data.tags["axes"]) == ("web_N" in row["config"]))]
        assert len(logged) == 2
        assert row["metadata_baseline_test_accuracy"] == pytest.approx(sum(logged) / 2)
    page = (built["out"] / "report.md").read_text()
    assert "metadata baseline (full)" in page and "Accuracy per source" in page
