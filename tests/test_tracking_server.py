"""The suite against a real MLflow tracking server over HTTP (as on a shared box or a cluster):
runs, nested cells, per-epoch metrics and proxied artifacts all land on the server."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from benchmark.config import load_suite
from benchmark.suite import SuiteOptions, run_suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    proc = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
         "--artifacts-destination", str(tmp / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):  # bounded wait for the server to answer
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("mlflow server exited at start")
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_suite_logs_to_a_tracking_server(server, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", {"experiment": "remote", "training.epochs": 1,
                                 "models": [{"name": "test_resnet"}], "explain.methods": []})
    assert run_suite(suite, SuiteOptions(data_dir=str(data_dir))) == 0
    client = MlflowClient(server)
    exp = client.get_experiment_by_name("remote")
    (cell,) = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
    assert cell.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(cell.info.run_id, "val_loss")] == [1]
    plots = {f.path for f in client.list_artifacts(cell.info.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots
    # the rerun against the server finds the finished cell and skips it
    assert run_suite(suite, SuiteOptions(data_dir=str(data_dir))) == 0
    assert len(client.search_runs([exp.experiment_id], "tags.role = 'cell'")) == 1
