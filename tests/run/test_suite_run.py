"""Suite orchestration in-process: failures are isolated, killed runs are retried, --force reruns."""
from __future__ import annotations

import json

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mribench import tracking
from mribench.config.suite_file import load_suite
from mribench.data import fallback
from mribench.matrix import expand
from mribench.report.summary import report
from mribench.run import cell as cell_module
from mribench.run.suite import SuiteOptions, run_suite

FAST = {"training.epochs": 1, "explain.methods": [], "experiment": "bench-test",
        "seeds": [0, 1], "models": [{"name": "test_resnet"}]}


@pytest.fixture
def suite(mlflow_store, smoke_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    # the data decided up front (the full 7023 set, else the shipped sample), so expand() here
    # gives the run_keys that run_suite logs
    return fallback.substitute(load_suite("smoke", FAST), str(smoke_data_dir))[0]


def opts(data_dir, **kw):
    return SuiteOptions(device="cpu", data_dir=str(data_dir), **kw)


def cells_by_status(client):
    exp = client.get_experiment_by_name("bench-test")
    runs = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
    out = {}
    for r in runs:
        out.setdefault(r.info.status, []).append(r)
    return out


def test_failing_cell_is_marked_failed_and_others_finish(suite, smoke_data_dir, monkeypatch,
                                                         capsys):
    real_fit = cell_module.fit
    bad_key = expand(suite)[1].run_key

    def fit_that_fails_for_seed_1(*args, **kwargs):
        if mlflow.get_run(mlflow.active_run().info.run_id).data.tags.get("run_key") == bad_key:
            raise RuntimeError("simulated divergence")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(cell_module, "fit", fit_that_fails_for_seed_1)
    assert run_suite(suite, opts(smoke_data_dir)) == 1
    runs = cells_by_status(MlflowClient())
    assert len(runs["FINISHED"]) == 1 and len(runs["FAILED"]) == 1
    assert "simulated divergence" in runs["FAILED"][0].data.tags["error"]
    assert "seed 1" in capsys.readouterr().err.replace("\n", " ")

    # the rerun retries only the failed cell and then succeeds
    monkeypatch.setattr(cell_module, "fit", real_fit)
    assert run_suite(suite, opts(smoke_data_dir)) == 0
    runs = cells_by_status(MlflowClient())
    assert len(runs["FINISHED"]) == 2 and len(runs["FAILED"]) == 1


def test_killed_run_is_retried_not_duplicated(suite, smoke_data_dir, tmp_path, capsys):
    import socket
    import subprocess

    victim = expand(suite)[0]
    exp_id = tracking.setup("bench-test")
    # what a SIGKILL mid-cell leaves behind: a cell run stuck in RUNNING, and the invocation's
    # parent run (and a tuning trial of another killed process) stuck in RUNNING
    stale = MlflowClient().create_run(exp_id, tags={"run_key": victim.run_key, "role": "cell"})
    gone = subprocess.Popen(["true"])
    gone.wait()
    owner = {"host": socket.gethostname(), "pid": str(gone.pid)}
    parents = [MlflowClient().create_run(exp_id, tags={"role": role, **owner}).info.run_id
               for role in ("suite", "trial", "tune")]
    assert run_suite(suite, opts(smoke_data_dir)) == 0
    runs = cells_by_status(MlflowClient())
    assert "RUNNING" not in runs
    assert [r.info.run_id for r in runs["KILLED"]] == [stale.info.run_id]
    for run_id in parents:  # closed too, not left RUNNING forever
        run = MlflowClient().get_run(run_id)
        assert run.info.status == "KILLED" and "its invocation died" in run.data.tags["error"]
    finished_keys = [r.data.tags["run_key"] for r in runs["FINISHED"]]
    assert sorted(finished_keys) == sorted(c.run_key for c in expand(suite))

    # --force reruns finished cells
    assert run_suite(suite, opts(smoke_data_dir, force=True)) == 0
    assert len(cells_by_status(MlflowClient())["FINISHED"]) == 4
    # ...and the report still counts each cell once (its newest run), so n is the seed count
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(suite.model_dump(mode="json")))
    capsys.readouterr()  # the suite's own result tables went to stdout too
    assert report(str(path), None, as_json=True, compare=True, write_files=False) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["n"] for r in out["rows"]] == [2]
    assert out["comparisons"] == []  # one configuration: nothing to compare


def test_cell_running_in_a_live_invocation_is_left_to_it(suite, smoke_data_dir, capsys):
    import os
    import socket

    busy = expand(suite)[0]
    exp_id = tracking.setup("bench-test")
    live = MlflowClient().create_run(exp_id, tags={
        "run_key": busy.run_key, "role": "cell", "host": socket.gethostname(),
        "pid": str(os.getpid())})  # this very process: certainly alive
    assert run_suite(suite, opts(smoke_data_dir)) == 0
    runs = cells_by_status(MlflowClient())
    assert [r.info.run_id for r in runs["RUNNING"]] == [live.info.run_id]
    assert [r.data.tags["run_key"] for r in runs["FINISHED"]] == [expand(suite)[1].run_key]
    assert "another live invocation" in " ".join(capsys.readouterr().err.split())


def test_shards_split_the_matrix_between_workers(suite, smoke_data_dir):
    for k in (0, 1):
        assert run_suite(suite, opts(smoke_data_dir, shard=(k, 2))) == 0
        finished = cells_by_status(MlflowClient())["FINISHED"]
        assert len(finished) == k + 1  # each worker ran exactly its own cell
    keys = sorted(r.data.tags["run_key"] for r in cells_by_status(MlflowClient())["FINISHED"])
    assert keys == sorted(c.run_key for c in expand(suite))


def test_each_dataset_split_is_prepared_once_per_invocation(suite, smoke_data_dir, monkeypatch):
    calls = []
    real = cell_module.data.prepare

    def counting(*args, **kwargs):
        calls.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cell_module.data, "prepare", counting)
    assert run_suite(suite, opts(smoke_data_dir)) == 0
    assert sorted(calls) == [0, 1]  # the preflight's seed-0 split is reused by its cell


def test_sigint_mid_cell_ends_cell_and_parent_killed_and_returns_130(suite, data_dir,
                                                                      monkeypatch, capsys):
    import os
    import signal
    import time

    def interrupted_fit(*args, **kwargs):  # Ctrl-C while the first cell trains
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # the handler raises before this ends
        raise AssertionError("SIGINT was not handled")

    monkeypatch.setattr(cell_module, "fit", interrupted_fit)
    assert run_suite(suite, opts(data_dir)) == 130
    runs = cells_by_status(MlflowClient())
    assert list(runs) == ["KILLED"] and len(runs["KILLED"]) == 1  # the second cell never began
    cell = runs["KILLED"][0]
    parent = MlflowClient().get_run(cell.data.tags["mlflow.parentRunId"])
    for run in (cell, parent):
        assert run.info.status == "KILLED" and run.data.tags["stop_signal"] == "SIGINT"
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped by SIGINT" in err and f"run {cell.info.run_id}" in err
    assert "0 cell(s) finished by this invocation are kept" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
