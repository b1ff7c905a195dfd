"""The README's main command on the smoke suite, then the tracking store read back (on the
full 7023 set when it is here, else on the sample shipped with the package).

Runs `mlflow run . -e suite -P suite=smoke --env-manager local` for real, twice: the first
invocation must land a parent run with nested cell runs, per-epoch metrics and artifacts; the
second must skip every finished cell and create no new cell runs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mribench.config.suite_file import load_suite
from mribench.data import fallback
from mribench.matrix import expand

ROOT = Path(__file__).resolve().parents[2]


def mlflow_run(env: dict, *extra: str) -> subprocess.CompletedProcess:
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    cmd = [mlflow, "run", ".", "-e", "suite", "-P", "suite=smoke", "--env-manager", "local",
           *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, smoke_data_dir):
    tmp = tmp_path_factory.mktemp("e2e")
    # in-process tests before this one leave MLFLOW_EXPERIMENT_ID & co. in os.environ
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {**clean, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "BENCHMARK_DATA_DIR": str(smoke_data_dir), "BENCHMARK_CACHE_DIR": str(tmp / "cache"),
           "MPLBACKEND": "Agg"}
    first = mlflow_run(env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(load_suite("smoke").experiment_name)
    runs_after_first = client.search_runs([exp.experiment_id])
    second = mlflow_run(env)
    # the cells of the data it ran on: the full 7023 set, else the sample shipped with the package
    expected = expand(fallback.substitute(load_suite("smoke"), str(smoke_data_dir))[0])
    return {"client": client, "exp": exp, "first": first, "second": second, "env": env,
            "runs_after_first": runs_after_first, "expected": expected}


def cell_runs(runs):
    return [r for r in runs if r.data.tags.get("role") == "cell"]


def test_parent_and_nested_cell_runs(smoke_runs):
    runs = smoke_runs["runs_after_first"]
    parents = [r for r in runs if r.data.tags.get("role") == "suite"]
    cells = cell_runs(runs)
    expected = smoke_runs["expected"]
    assert len(parents) == 1 and len(cells) == len(expected)
    assert {r.data.tags["run_key"] for r in cells} == {c.run_key for c in expected}
    for run in cells:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        for tag in ("dataset", "model", "strategy", "seed", "fold", "git_commit",
                    "package_version"):
            assert run.data.tags.get(tag), tag
        assert run.data.params["training.epochs"] == "2"


def test_per_epoch_metrics_have_steps(smoke_runs):
    client = smoke_runs["client"]
    for run in cell_runs(smoke_runs["runs_after_first"]):
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", "lr", "train_seconds",
                    "eval_seconds", "images_per_s"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == [1, 2], (key, steps)
        assert 0 <= run.data.metrics["test_accuracy"] <= 1


def test_artifacts_exist(smoke_runs):
    client = smoke_runs["client"]
    for run in cell_runs(smoke_runs["runs_after_first"]):
        files = {f.path for d in ("config", "metrics", "plots", "data", "explanations")
                 for f in client.list_artifacts(run.info.run_id, d)}
        for path in ("config/resolved.yaml", "metrics/confusion_matrix.csv",
                     "metrics/classification_report.json", "metrics/predictions.csv",
                     "plots/confusion_matrix.png", "plots/learning_curves.png",
                     "data/split.csv", "explanations/gradcam.png", "explanations/lime.png",
                     "explanations/maps.npz"):
            assert path in files, (path, sorted(files))


def test_every_cell_logs_calibration_before_and_after_and_selective_prediction(smoke_runs):
    """Each cell fits a temperature on its validation split and logs the probability metrics
    before and after it, and the risk-coverage figures, on the full and clean test; its
    predictions carry the calibrated probabilities beside the raw ones."""
    import pandas as pd

    client = smoke_runs["client"]
    runs = cell_runs(smoke_runs["runs_after_first"])
    assert runs
    for run in runs:
        m = run.data.metrics
        assert m["temperature"] > 0
        # the fit minimised the validation NLL: never above the NLL at T = 1
        assert m["val_log_loss_calibrated"] <= m["val_log_loss_uncalibrated"] + 1e-9
        for prefix in ("test", "test_clean"):
            for name in ("ece", "brier", "log_loss"):
                assert 0 <= m[f"{prefix}_{name}"] and 0 <= m[f"{prefix}_calibrated_{name}"]
            assert 0 <= m[f"{prefix}_eaurc"] <= m[f"{prefix}_aurc"] <= 1
            for c in (80, 90):
                assert 0 <= m[f"{prefix}_accuracy_at_coverage_{c}"] <= 1
            assert f"{prefix}_aurc_entropy" in m
        files = {f.path for d in ("metrics", "plots")
                 for f in client.list_artifacts(run.info.run_id, d)}
        assert {"metrics/reliability_calibrated.csv", "plots/reliability_calibrated.png",
                "plots/reliability_clean_calibrated.png"} <= files
        frame = pd.read_csv(client.download_artifacts(run.info.run_id, "metrics/predictions.csv"))
        raw = frame.filter(regex="^prob_").to_numpy()
        cal = frame.filter(regex="^calibrated_prob_").to_numpy()
        assert cal.shape == raw.shape and abs(cal.sum(axis=1) - 1).max() < 1e-9
        assert (cal.argmax(1) == raw.argmax(1)).all()  # the prediction never changes


def test_explanations_are_checked_and_show_the_same_files(smoke_runs):
    """Every explained cell logs where the heat falls and the randomisation check, and its
    per-image maps; both models explain the same test files."""
    import numpy as np

    client, picked = smoke_runs["client"], set()
    for run in cell_runs(smoke_runs["runs_after_first"]):
        metrics = run.data.metrics
        assert metrics["lime_in_mask_fraction"] == 1.0  # LIME never leaves the brain
        assert 0.2 < metrics["mask_area_fraction"] < 0.95
        for method in ("gradcam", "lime"):
            assert f"{method}_randomisation_spearman" in metrics
            assert f"{method}_flag_randomisation" in metrics
        assert run.data.tags["explain_lime_hide"] == "background"
        assert run.data.tags["explain_layer_gradcam"].startswith(
            {"test_resnet": "layer4", "test_efficientnet": "bn2"}[run.data.tags["model"]])
        local = client.download_artifacts(run.info.run_id, "explanations/maps.npz")
        with np.load(local) as maps:
            n = len(maps["files"])
            assert maps["images"].dtype == np.uint8 and maps["images"].shape[0] == n == 4
            assert maps["masks"].dtype == bool and maps["gradcam"].shape == maps["masks"].shape
            assert np.all(maps["lime"][~maps["masks"]] == 0)
            picked.add(tuple(maps["files"]))
    assert len(picked) == 1  # the same files in every cell


def test_second_invocation_skips_finished_cells(smoke_runs):
    second = smoke_runs["second"]
    assert second.returncode == 0, second.stderr[-4000:]
    assert "skip" in second.stderr
    client, exp = smoke_runs["client"], smoke_runs["exp"]
    before = cell_runs(smoke_runs["runs_after_first"])
    after = cell_runs(client.search_runs([exp.experiment_id]))
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)


def test_report_summarises_finished_cells_as_json(smoke_runs):
    out = subprocess.run([sys.executable, "-m", "mribench", "report", "smoke", "--no-files",
                          "--json"],
                         cwd=ROOT, env=smoke_runs["env"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    rows = {(r["model"], r["strategy"]): r for r in report["rows"]}
    assert set(rows) == {("test_resnet", "scratch"), ("test_efficientnet", "scratch")}
    for row in rows.values():
        assert row["n"] == 1 and 0 <= row["test_accuracy"] <= 1
    # the two models, paired on the same test images: clean subset and full test
    pairs = {p["subset"]: p for p in report["comparisons"]}
    assert set(pairs) == {"clean", "full"} and len(report["comparisons"]) == 2
    assert pairs["full"]["images"] == 24 and 0 <= pairs["full"]["p_value"] <= 1
    assert pairs["clean"]["images"] <= 24


def test_killed_invocation_resumes_without_duplicates(smoke_data_dir, tmp_path):
    """SIGKILL the suite after its first cell finished; the rerun keeps that cell and finishes
    the rest, with exactly one FINISHED run per cell."""
    import signal
    import time

    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**clean, "MLFLOW_TRACKING_URI": uri, "BENCHMARK_DATA_DIR": str(smoke_data_dir),
           "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "mribench", "suite", "smoke", "--set", "training.epochs=6"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    client, first = MlflowClient(uri), None
    deadline = time.time() + 300
    while first is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        exp = client.get_experiment_by_name("benchmark-smoke")
        if exp is not None:
            cells = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
            done = [r for r in cells if r.info.status == "FINISHED"]
            # kill mid-way through the second cell, not in the gap before its run exists
            if done and any(r.info.status == "RUNNING" for r in cells):
                first = done[0].info.run_id
    assert first is not None and proc.poll() is None, "the first cell never finished"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    runs = cell_runs(client.search_runs([exp.experiment_id]))
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["run_key"] for r in finished) == sorted(
        c.run_key for c in expand(fallback.substitute(load_suite("smoke", {"training.epochs": 6}),
                                                   str(smoke_data_dir))[0]))
    assert first in {r.info.run_id for r in finished}  # kept, not redone
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # the cell that was mid-training when killed is marked KILLED and said so, then retried
    assert [r.info.status for r in runs].count("KILLED") == 1
    assert "marked KILLED" in " ".join(rerun.stderr.split())
