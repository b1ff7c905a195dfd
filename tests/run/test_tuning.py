"""Optuna tuning: real trials as nested MLflow runs, scored on validation only, resumable."""
from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mribench.config.suite_file import load_suite
from mribench.run.suite import SuiteOptions
from mribench.run.tuning import tune


def test_tune_runs_trials_and_resumes(mlflow_store, smoke_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", {"training.epochs": 1, "experiment": "tune-test"})
    opts = SuiteOptions(device="cpu", data_dir=str(smoke_data_dir), as_json=True)
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


def test_unknown_combination_names_what_exists(mlflow_store, smoke_data_dir):
    suite = load_suite("smoke")
    with pytest.raises(ValueError, match="test_efficientnet"):
        tune(suite, "test_resnet", "frozen", None, 1, SuiteOptions(data_dir=str(smoke_data_dir)))



@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_processes_sharing_a_study_draw_different_trials(tmp_path):
    """Two processes on one storage (two Study objects, as two processes would hold) alternate
    trials: every proposal differs. With TPESampler(seed=cell.seed) both drew the same."""
    import optuna

    from mribench.run.tuning import open_study

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    studies = [open_study("shared", url), open_study("shared", url)]
    for i in range(6):
        study = studies[i % 2]
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
        study.tell(trial, (lr - 1e-3) ** 2)
    lrs = [t.params["lr"] for t in studies[0].trials]
    assert len(lrs) == 6 and len(set(lrs)) == 6
    # one process alone is reproducible: the same study name draws the same first trials
    again = optuna.create_study(sampler=type(studies[0].sampler)(), study_name="shared")
    assert again.ask().suggest_float("lr", 1e-5, 1e-2, log=True) == lrs[0]


def test_killed_tune_resumes_to_the_requested_total_with_distinct_trials(tmp_path, data_dir):
    """SIGKILL a tune mid-trial, run it again with the same --trials: the dead trial is failed
    and retried with its parameters, the study ends with exactly --trials finished trials, all
    different, and no MLflow run is left RUNNING."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from invocations import ROOT, env_for, runs_of, tiny_suite

    # enough epochs that trial 1 is seen running (a 4-epoch trial took 0.3 s on an idle machine,
    # between two polls)
    suite = tiny_suite(tmp_path, seeds=[0], epochs=30)
    env = env_for(tmp_path, data_dir)
    cmd = [sys.executable, "-m", "mribench", "tune", str(suite), "--model", "test_resnet",
           "--strategy", "scratch", "--trials", "3",
           "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        victim = next((r for r in runs_of(env) if r.data.tags.get("role") == "trial"
                       and r.data.tags.get("trial") == "1" and r.info.status == "RUNNING"), None)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = json.loads(rerun.stdout)["rows"]
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3  # --trials is the study's total, not 3 more
    assert len({r["lr"] for r in finished}) == 3  # nothing replayed
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["lr"] in {r["lr"] for r in finished}  # retried
    runs = runs_of(env)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert sorted(r.data.tags["role"] for r in killed) == ["trial", "tune"]
    assert victim.info.run_id in {r.info.run_id for r in killed}
    assert all("its invocation died" in r.data.tags["error"] for r in killed)
