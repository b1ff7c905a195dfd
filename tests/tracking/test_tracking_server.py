"""The suite against a real MLflow tracking server over HTTP (as on a shared box or a cluster),
backed by SQLite and by PostgreSQL (docker/compose.yaml's stack): runs, nested cells, per-epoch
metrics and proxied artifacts all land on the server, and a rerun skips finished cells."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack

import pytest
from mlflow.tracking import MlflowClient

from mribench.config.suite_file import load_suite
from mribench.run.suite import SuiteOptions, run_suite
from servers import mlflow_server, postgres

pytestmark = pytest.mark.services  # starts real servers (see pyproject markers)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    with ExitStack() as stack:
        store = (f"sqlite:///{tmp / 'server.db'}" if request.param == "sqlite"
                 else stack.enter_context(postgres()))
        yield stack.enter_context(mlflow_server(store, tmp / "artifacts"))


def test_suite_logs_to_a_tracking_server(server, smoke_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", {"experiment": "remote", "training.epochs": 1,
                                 "models": [{"name": "test_resnet"}], "explain.methods": []})
    assert run_suite(suite, SuiteOptions(data_dir=str(smoke_data_dir))) == 0
    client = MlflowClient(server)
    exp = client.get_experiment_by_name("remote")
    (cell,) = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
    assert cell.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(cell.info.run_id, "val_loss")] == [1]
    plots = {f.path for f in client.list_artifacts(cell.info.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots
    # the rerun against the server finds the finished cell and skips it
    assert run_suite(suite, SuiteOptions(data_dir=str(smoke_data_dir))) == 0
    assert len(client.search_runs([exp.experiment_id], "tags.role = 'cell'")) == 1


def test_json_output_stays_valid_with_a_server(server, smoke_data_dir, tmp_path):
    """MLflow prints "View run ... at http://..." when it talks to a server; those lines must
    not reach stdout, or `--json` stops being JSON. The installed console script, run from a
    folder outside the repository, as a user would."""
    cli = shutil.which("mribench", path=os.path.dirname(sys.executable))
    assert cli, "the mribench console script is not installed in this environment"
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "BENCHMARK_DATA_DIR": str(smoke_data_dir),
           "BENCHMARK_CACHE_DIR": str(tmp_path / "cache")}
    common = ["--experiment", "json-remote"]
    run = subprocess.run([cli, "suite", "smoke", "--json", *common, "--set", "training.epochs=1",
                          "--set", "explain.methods=[]"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    table = json.loads(run.stdout)
    assert [r["status"] for r in table["rows"]] == ["FINISHED", "FINISHED"]
    report = subprocess.run([cli, "report", "smoke", "--json", *common, "--compare", "--all"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    assert json.loads(report.stdout)["experiment"] == "json-remote"
