"""The strategy table is the one place a strategy is named: the schema, the CLI, the builder,
the cell runner and the tuner read it; a strategy registered from outside runs a whole cell;
shipped suites keep their run_keys."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mribench.config.schema import StrategyConfig
from mribench.config.suite_file import load_suite
from mribench.matrix import expand
from mribench.models import strategies
from mribench.run.suite import SuiteOptions, run_suite

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "benchmark" / "mribench"
PINNED = Path(__file__).with_name("run_keys.json")
# The same word with another meaning: a test subset, a randomisation mode, a weight source.
SECOND_MEANING = {
    ("config/explain.py", "full"),  # explain.randomisation: full / cascading
    ("explain/checks.py", "full"),
    ("report/curves.py", "full"),  # the full test split (vs its clean subset)
    ("report/files.py", "full"),
    ("report/robustness.py", "full"),
    ("report/tables.py", "full"),
    ("stats/compare.py", "full"),
    ("report/frontier.py", "full"),
    ("report/calibration.py", "full"),
    ("report/composition.py", "full"),
    ("report/slices.py", "full"),
    ("report/summary.py", "full"),
    ("run/layout.py", "full"),  # the full test split: the subset names live in the run layout
    ("models/summary.py", "norm"),  # a layer kind in the layer counts
    ("models/timm_specs.py", "norm"),  # a substring of normalisation layers' type names
    ("models/build.py", "scratch"),  # weight_source: no weights loaded
}


def test_no_strategy_name_is_a_string_literal_outside_the_registry():
    names, found = set(strategies.names()), []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "models/strategies.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and node.value in names
                    and (rel, node.value) not in SECOND_MEANING):
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, f"strategy names compared outside models/strategies.py: {found}"


def test_the_schema_and_the_cli_list_the_registered_strategies():
    from mribench.config.json_schema import suite_json_schema

    name = suite_json_schema()["$defs"]["StrategyConfig"]["properties"]["name"]
    assert name["enum"] == strategies.names()
    exe = shutil.which("mribench", path=os.path.dirname(sys.executable))
    done = subprocess.run([exe, "models", "describe", "--help"], capture_output=True, text=True,
                          cwd="/", timeout=60)
    assert "{" + ",".join(strategies.names()) + "}" in done.stdout.replace("\n", "").replace(
        " ", "")


def test_an_unknown_strategy_is_refused_with_the_registered_ones_listed():
    with pytest.raises(ValueError, match="unknown strategy 'fancy'.*linear_probe"):
        StrategyConfig(name="fancy")
    with pytest.raises(ValueError, match="k is a parameter of strategy knn, not of 'full'"):
        StrategyConfig(name="full", k=3)
    assert StrategyConfig(name="knn").k == strategies.KNN.options["k"]


def test_every_shipped_suite_keeps_its_run_keys():
    pinned = json.loads(PINNED.read_text())
    now = {path.stem: {c.title: c.run_key for c in expand(load_suite(path))}
           for path in sorted((ROOT / "suites").glob("*.yaml"))}
    for suite, keys in pinned.items():
        assert now[suite] == keys, f"suite {suite}: run_keys changed"


@pytest.fixture
def top_two():
    """A strategy the package does not ship: pretrained, the last two block groups trained."""
    spec = strategies.register(strategies.StrategySpec(
        "top_two", "the last two block groups trained", trainable=lambda cfg, n, epoch: min(2, n)))
    yield spec
    strategies.unregister(spec.name)


def test_a_strategy_registered_outside_the_package_runs_a_cell(top_two, mlflow_store,
                                                               smoke_data_dir, tmp_path,
                                                               monkeypatch, weights_dir):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", {"experiment": "registered", "explain.methods": ["gradcam"],
                                 "explain.per_class": 1, "explain.randomisation": "none",
                                 "explain.faithfulness": False, "training.epochs": 1,
                                 "models": [{"name": "test_resnet"}],
                                 "strategies": ["top_two", "frozen"]})
    assert run_suite(suite, SuiteOptions(device="cpu", data_dir=str(smoke_data_dir))) == 0
    client = MlflowClient()
    exp = client.get_experiment_by_name("registered")
    runs = {r.data.tags["strategy"]: r
            for r in client.search_runs([exp.experiment_id], "tags.role = 'cell'")}
    mine, frozen = runs["top_two"], runs["frozen"]
    assert mine.info.status == "FINISHED" and mine.data.params["model_trainable_groups"] == "2"
    assert mine.data.tags["training_path"] == "end_to_end"
    assert int(mine.data.params["params_trainable"]) > int(frozen.data.params["params_trainable"])
    assert 0 <= mine.data.metrics["test_accuracy"] <= 1
    assert "gradcam_pointing_game" in mine.data.metrics or any(
        k.startswith("gradcam") for k in mine.data.metrics)


def test_batchnorm_stats_adapt_cells_are_transfer_methods_own():
    """The suite trains only its `pretrained` cells: its `adapt` cells have the run_keys of
    transfer_methods' cells (same experiment), so they are found finished, not trained again."""
    def keys(stem: str) -> dict[str, str]:
        return {c.run_key: c.axes_label for c in expand(load_suite(ROOT / "suites" / f"{stem}.yaml"))}

    ours, theirs = keys("batchnorm_stats"), keys("transfer_methods")
    adapt = {k for k, label in ours.items() if "batchnorm=adapt" in label}
    assert len(adapt) == 30 and adapt <= set(theirs)
    assert not {k for k, label in ours.items() if "batchnorm=pretrained" in label} & set(theirs)
