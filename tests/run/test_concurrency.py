"""Real invocations at once and real signals: at most one FINISHED run per cell, clean stops.

Each test starts `python -m mribench` subprocesses against one SQLite store, on a tiny suite
(the smoke subset of the real 7023 set, 48 px, test_resnet, one epoch).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from invocations import env_for, runs_of, start, tiny_suite
from mribench.config.suite_file import load_suite
from mribench.matrix import expand


def test_fresh_sqlite_store_created_by_many_processes_at_once(tmp_path):
    """MLflow's table creation raced ("duplicate column name: step") when several invocations
    opened one new SQLite file; the store's lock serialises it."""
    env, n = env_for(tmp_path, tmp_path), 3
    # every process imports first and waits for the others, then all open the store together
    # (without the lock, two of three failed every time here)
    code = f"""
import os, pathlib, sys, time
from mribench import tracking
ready = pathlib.Path(sys.argv[2])
(ready / f"ready{{os.getpid()}}").touch()
while len(list(ready.glob("ready*"))) < {n}:
    time.sleep(0.05)
print(tracking.setup(sys.argv[1]))
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, f"exp{i % 2}", str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
    ids = [out.strip() for out, _ in outs]
    assert ids[0] == ids[2] != ids[1]  # one experiment per name


def test_two_invocations_at_once_finish_each_cell_once(tmp_path, data_dir):
    """Two invocations of one suite on a fresh store at the same time: the cells are shared
    out, none is trained twice (the old code trained every cell in both)."""
    suite = tiny_suite(tmp_path, seeds=[0, 1, 2, 3])
    env = env_for(tmp_path, data_dir)
    procs = [start(["suite", str(suite), "--json"], env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-3000:]
    cells = [r for r in runs_of(env) if r.data.tags.get("role") == "cell"]
    assert {r.info.status for r in cells} == {"FINISHED"}
    keys = sorted(r.data.tags["run_key"] for r in cells)
    assert keys == sorted(c.run_key for c in expand(load_suite(suite)))  # each exactly once
    rows = [row for out, _ in outs for row in json.loads(out)["rows"]]
    assert sorted(r["status"] for r in rows) == ["FINISHED"] * 4 + ["SKIPPED"] * 4
    trained = {r["run_key"]: r["run_id"] for r in rows if r["status"] == "FINISHED"}
    for row in rows:  # what one skipped, the other trained (or had just finished)
        if row["status"] == "SKIPPED":
            assert row["skip_reason"] in ("running elsewhere", "finished earlier")
            assert row["run_id"] == trained[row["run_key"]]


def test_sigterm_mid_cell_ends_runs_killed_and_exits_143(tmp_path, data_dir):
    suite = tiny_suite(tmp_path, seeds=[0], epochs=300)
    env = env_for(tmp_path, data_dir)
    proc = start(["suite", str(suite)], env)
    client, deadline, cell = MlflowClient(env["MLFLOW_TRACKING_URI"]), time.time() + 300, None
    while cell is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        running = [r for r in runs_of(env) if r.data.tags.get("role") == "cell"
                   and r.info.status == "RUNNING"]
        if running and client.get_metric_history(running[0].info.run_id, "train_loss"):
            cell = running[0]  # mid-training: at least one epoch logged
    assert cell is not None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    said = " ".join(err.split())
    assert "stopped by SIGTERM" in said and "run the same command again" in said
    assert f"run {cell.info.run_id}" in said
    runs = {r.info.run_id: r for r in runs_of(env)}
    killed = runs[cell.info.run_id]
    parent = runs[killed.data.tags["mlflow.parentRunId"]]
    for run in (killed, parent):
        assert run.info.status == "KILLED"
        assert run.data.tags["stop_signal"] == "SIGTERM"
        assert "stopped by SIGTERM" in run.data.tags["error"]
