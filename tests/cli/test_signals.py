"""Every command ends SIGINT/SIGTERM the same way, as real processes: exit 130/143, one line
saying so, no traceback, and no MLflow run left RUNNING (`suite`: tests/run/test_concurrency.py;
`predict`, `evaluate`, `report`: tests/e2e/test_use_guarantees.py)."""
from __future__ import annotations

import os
import signal
import time

import pytest
import yaml

from invocations import EXPERIMENT, env_for, runs_of
from signalled import one_stop_line, stop


@pytest.mark.parametrize("args, signum", [
    (["schema"], signal.SIGTERM),
    (["data", "list"], signal.SIGINT),
    (["models", "list"], signal.SIGTERM),
], ids=["schema", "data", "models"])
def test_a_command_stopped_while_printing_exits_128_plus_the_signal(tmp_path, args, signum):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    code, err, out = stop(args, signum, env, tmp_path)
    line = one_stop_line(code, err, signum)
    assert f"mribench {args[0]} did not finish" in line
    assert len(out.encode()) >= 4096  # stopped while writing its results (bytes)


def test_perf_stopped_between_rounds_exits_130(tmp_path, weights_dir):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    code, err, _ = stop(["perf", "--model", "test_resnet", "--dataset",
                         "brain-tumor-mri-7023-sample", "--image-size", "32", "--batch-size", "4",
                         "--per-class", "4", "--repeats", "200", "--device", "cpu"],
                        signal.SIGINT, env, tmp_path, ready=lambda said: "round 1/200" in said)
    assert "mribench perf did not finish" in one_stop_line(code, err, signal.SIGINT)


def test_ctrl_c_mid_trial_ends_tune_and_its_runs_killed_with_130(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "tiny", "experiment": EXPERIMENT,
        "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
        "split": {"protocol": "official", "val_fraction": 0.25},
        "preprocess": {"image_size": 32}, "training": {"epochs": 300, "batch_size": 8},
        "models": [{"name": "test_resnet"}], "strategies": ["scratch"],
        "explain": {"methods": []}}))
    env = env_for(tmp_path, tmp_path / "no-data")

    def trial_running(_said: str) -> bool:
        time.sleep(0.3)  # one query every 0.3 s
        return any(r.data.tags.get("role") == "trial" and r.info.status == "RUNNING"
                   for r in runs_of(env))

    code, err, _ = stop(["tune", str(suite), "--model", "test_resnet", "--strategy", "scratch",
                         "--trials", "2", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"],
                        signal.SIGINT, env, tmp_path, ready=trial_running)
    assert "run the same command again" in one_stop_line(code, err, signal.SIGINT)
    runs = runs_of(env)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    killed = sorted(r.data.tags["role"] for r in runs if r.info.status == "KILLED")
    assert killed == ["trial", "tune"]
