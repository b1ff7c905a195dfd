"""Runs come back from tracking/ with plain column names; nothing else knows MLflow's prefixes."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import mribench
from source_strings import string_literals

PKG = Path(mribench.__file__).resolve().parent
# a column name as MLflow's run frame spells it: `tags.seed`, `metrics.test_accuracy`, ...
PREFIXED = re.compile(r"(?:tags|metrics|params)\.[A-Za-z_{]")


def test_no_module_outside_tracking_spells_an_mlflow_column_name():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if "tracking" in path.relative_to(PKG).parts:
            continue
        for line, text in string_literals(ast.parse(path.read_text())):
            if PREFIXED.match(text) or (text in ("tags.", "metrics.", "params.")):
                found.append(f"{path.relative_to(PKG)}:{line}: {text!r}")
    assert found == [], "MLflow column names outside tracking/ (use tracking's plain names):\n" \
        + "\n".join(found)


def test_the_scan_sees_the_spellings_it_forbids():
    # the scan itself: each way a prefixed name could be written is caught
    code = ('x = runs["tags.seed"]\ny = f"metrics.{name}"\nz = "params.n_train"\n'
            'w = c.removeprefix("tags.")\n')
    texts = [t for _, t in string_literals(ast.parse(code))]
    assert sum(bool(PREFIXED.match(t)) or t == "tags." for t in texts) == 4


def test_cells_come_back_with_plain_names_tags_first(mlflow_store):
    import mlflow

    from mribench import tracking

    exp_id = tracking.setup("plain-columns")
    with mlflow.start_run(experiment_id=exp_id):
        # a cell logs seed and fold as tags and, from its resolved config, as params too
        mlflow.set_tags({"role": "cell", "seed": "3", "fold": "-", "config_key": "k",
                         "axis.image_size": "64"})
        mlflow.log_params({"seed": "3", "fold": "None", "n_train": "80",
                           "split.protocol": "official", "test_accuracy": "param"})
        mlflow.log_metrics({"test_accuracy": 0.75})
    with mlflow.start_run(experiment_id=exp_id):
        mlflow.set_tags({"role": "suite"})  # not a cell: left out
    runs = tracking.search_cells(exp_id)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["seed"], row["fold"], row["config_key"]) == ("3", "-", "k")  # the tags
    assert row["test_accuracy"] == 0.75  # the metric, not the param of the same name
    assert (row["n_train"], row["split.protocol"], row["axis.image_size"]) == ("80", "official",
                                                                                "64")
    assert row["status"] == "FINISHED" and len(row["run_id"]) == 32
    assert not [c for c in runs.columns if PREFIXED.match(c)]
    assert len(set(runs.columns)) == len(runs.columns)
