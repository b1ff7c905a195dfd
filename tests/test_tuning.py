"""Optuna tuning: real trials as nested MLflow runs, scored on validation only, resumable."""
from __future__ import annotations

import json

import mlflow
from mlflow.tracking import MlflowClient

from mribench.config import load_suite
from mribench.suite import SuiteOptions
from mribench.tuning import tune


def test_tune_runs_trials_and_resumes(mlflow_store, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", {"training.epochs": 1, "experiment": "tune-test"})
    opts = SuiteOptions(device="cpu", data_dir=str(data_dir), as_json=True)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    assert tune(suite, "test_resnet", "scratch", None, 2, opts, storage) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in out["rows"]] == ["COMPLETE", "COMPLETE"]
    assert 1e-5 <= out["best"]["params"]["lr"] <= 1e-2
    assert "lr:" in out["suite_override"]

    exp = mlflow.get_experiment_by_name("tune-test")
    runs = MlflowClient().search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "tune"]
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(parents) == 1 and len(trials) == 2
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "run_key" not in run.data.tags  # trials are never mistaken for suite cells
        assert "val_loss" in run.data.metrics
        assert not any(k.startswith("test_") for k in run.data.metrics)  # no peeking at test

    # the same storage resumes the study: --trials is the total, so asking for 3 runs one more
    assert tune(suite, "test_resnet", "scratch", None, 3, opts, storage) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    assert len({r["lr"] for r in rows}) == 3  # the resumed process did not replay trial 0


def test_unknown_combination_names_what_exists(mlflow_store, data_dir):
    import pytest

    suite = load_suite("smoke")
    with pytest.raises(ValueError, match="test_efficientnet"):
        tune(suite, "test_resnet", "frozen", None, 1, SuiteOptions(data_dir=str(data_dir)))
