"""`suite --executor ray` on a real Ray cluster (two nodes on 127.0.0.1, one CPU each) against
the password-protected tracking server on PostgreSQL that docker/compose.yaml runs
(docker/tracking-server.sh): cells run at once and land as the local loop lands them, a killed
worker is retried without a second FINISHED run, two drivers at once duplicate nothing, a
SQLite file is refused, and the server wants a password."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("ray", reason="Ray is not installed: pip install 'brain-mri-benchmark[ray]'")

from mlflow.tracking import MlflowClient  # noqa: E402

from mribench.config.suite_file import load_suite  # noqa: E402
from mribench.run.suite import SuiteOptions, run_suite  # noqa: E402
from servers import ray_cluster, secured_server  # noqa: E402

pytestmark = pytest.mark.services  # starts real servers (see pyproject markers)

ADMIN = ("admin", "admin-" + os.urandom(8).hex())
WORKER = ("worker", "worker-" + os.urandom(8).hex())
# the smoke suite, smaller: one epoch, no explanations, no logged model (what these tests check
# is where cells run and land; logging a model per cell through the server costs seconds each)
SMALL = {"training.epochs": 1, "explain.methods": [], "artifacts.model": "none"}
SMALL_ARGS = ["--epochs", "1", "--set", "explain.methods=[]", "--set", "artifacts.model=none"]


def _request(url: str, path: str, user: tuple[str, str] | None = None, body: dict | None = None):
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(user).encode()).decode()
    req = urllib.request.Request(url + path, headers=headers,
                                 data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The secured server, with a `worker` account made by the admin (as the README says)."""
    with secured_server(tmp_path_factory.mktemp("secured"), ADMIN[1]) as (url, optuna_url):
        assert _request(url, "/api/2.0/mlflow/users/create", ADMIN,
                        {"username": WORKER[0], "password": WORKER[1]}) == 200
        yield url, optuna_url


@pytest.fixture(scope="module")
def cluster(server, smoke_data_dir, tmp_path_factory):
    """Two Ray nodes whose workers log in as `worker` (credentials in the environment of
    `ray start`, as on a real cluster); yields (address, environment for drivers)."""
    tmp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(32).hex(),
           "MLFLOW_TRACKING_URI": server[0], "MLFLOW_TRACKING_USERNAME": WORKER[0],
           "MLFLOW_TRACKING_PASSWORD": WORKER[1], "BENCHMARK_DATA_DIR": str(smoke_data_dir),
           "BENCHMARK_CACHE_DIR": str(tmp / "cache"), "MPLBACKEND": "Agg"}
    env.pop("RAY_ADDRESS", None)
    with ray_cluster(env, tmp) as address:
        yield address, env


@pytest.fixture
def worker_login(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server[0])
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", WORKER[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", WORKER[1])
    return MlflowClient(server[0])


def driver(cluster, experiment: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    address, cluster_env = cluster
    return subprocess.Popen(
        [sys.executable, "-m", "mribench", "suite", "smoke", "--executor", "ray", "--address",
         address, "--experiment", experiment, "--json", *SMALL_ARGS, *extra],
        env=env or cluster_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: int = 600) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def cell_runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.role = 'cell'") if exp else []


def test_server_wants_a_password(server):
    url, optuna_url = server
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _request(url, path) == 401
    assert _request(url, path, (WORKER[0], "wrong")) == 401
    assert _request(url, path, WORKER) == 200
    # Optuna studies live on the same PostgreSQL (their own database)
    import optuna

    optuna.create_study(study_name="shared", storage=optuna_url)
    assert "shared" in optuna.get_all_study_names(storage=optuna_url)


def test_a_sqlite_file_is_refused_with_a_cluster(cluster, monkeypatch, tmp_path, capsys):
    store = tmp_path / "mlflow.db"
    # two nodes: refused once connected, before any work
    env = {**cluster[1], "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    code, out, err = finish(driver(cluster, "refused", env=env))
    assert code == 2 and out is None
    assert "cannot share" in err and "MLFLOW_TRACKING_URI" in err and "Traceback" not in err
    # a Ray client address (ray://) means other machines: refused without connecting
    from mribench.cli.main import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    assert main(["suite", "smoke", "--executor", "ray", "--address", "ray://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot share" in err and "ray://" in err
    assert not store.exists()  # nothing was written


def test_cells_run_at_once_survive_a_killed_worker_and_land_as_the_local_loop_does(
        cluster, worker_login, smoke_data_dir, one_thread, monkeypatch):
    client = worker_login
    proc = driver(cluster, "on-ray")
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        running = [r for r in cell_runs(client, "on-ray") if r.info.status == "RUNNING"]
        if running:
            victim = running[0]
            os.kill(int(victim.data.tags["pid"]), signal.SIGKILL)  # its Ray worker, mid-cell
        time.sleep(0.3)
    assert victim is not None, "no cell was seen running"
    # meanwhile, the same cells through the local loop, in this process
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", cluster[1]["BENCHMARK_CACHE_DIR"])
    local = load_suite("smoke", {**SMALL, "experiment": "local"})
    assert run_suite(local, SuiteOptions(data_dir=str(smoke_data_dir))) == 0
    code, out, err = finish(proc)
    assert code == 0, err[-3000:]
    assert [r["status"] for r in out["rows"]] == ["FINISHED", "FINISHED"]

    runs = cell_runs(client, "on-ray")
    killed = client.get_run(victim.info.run_id)  # Ray retried it; the retry took it over
    assert killed.info.status == "KILLED" and "Ray retried" in killed.data.tags["error"]
    on_ray = {r.data.tags["run_key"]: r for r in runs if r.info.status == "FINISHED"}
    assert len(on_ray) == 2 and len(runs) == 3  # one FINISHED per cell, plus the killed attempt
    here = {r.data.tags["run_key"]: r for r in cell_runs(client, "local")}
    assert on_ray.keys() == here.keys()
    for key, run in on_ray.items():
        assert run.data.tags["mlflow.parentRunId"] == out["parent_run_id"]
        # a cell's thread count and where it came from are how it ran, not what it computed
        # (a Ray worker gets one thread per CPU it holds; the local loop shares the machine's)
        how = {"torch_threads", "torch_threads_from"}
        assert ({k: v for k, v in run.data.params.items() if k not in how}
                == {k: v for k, v in here[key].data.params.items() if k not in how})
        assert run.data.metrics.keys() == here[key].data.metrics.keys()
        for name in ("test_accuracy", "test_f1_macro", "test_log_loss", "val_loss"):
            assert run.data.metrics[name] == pytest.approx(here[key].data.metrics[name], abs=1e-6)
        assert ({f.path for f in client.list_artifacts(run.info.run_id)}
                == {f.path for f in client.list_artifacts(here[key].info.run_id)})
    # the two cells ran at once: a run of one overlaps a run of the other
    a, b = ([r for r in runs if r.data.tags["run_key"] == key] for key in on_ray)
    assert any(x.info.start_time < y.info.end_time and y.info.start_time < x.info.end_time
               for x in a for y in b), "the two cells never ran at the same time"


def test_two_drivers_at_once_duplicate_nothing(cluster, worker_login):
    client = worker_login
    first, second = driver(cluster, "twice"), driver(cluster, "twice")
    results = [finish(first), finish(second)]
    for code, _out, err in results:
        assert code == 0, err[-3000:]
    runs = cell_runs(client, "twice")
    finished = sorted(r.data.tags["run_key"] for r in runs if r.info.status == "FINISHED")
    assert len(finished) == 2 and len(set(finished)) == 2
    statuses = sorted(r["status"] for _, out, _ in results for r in out["rows"])
    assert statuses == ["FINISHED", "FINISHED", "SKIPPED", "SKIPPED"]


def test_a_worker_that_cannot_see_the_data_fails_its_cell_naming_the_path(
        mlflow_store, tmp_path, monkeypatch):
    """What a Ray task runs (`run_claimed` with its task as owner), on a node whose
    BENCHMARK_DATA_DIR points where the data is not: the cell fails with the host and the
    folders looked in; the suite's other cells are not affected."""
    from mribench import tracking
    from mribench.matrix import expand
    from mribench.run import executors
    from mribench.run.cell import RunOptions

    suite = load_suite("smoke", {**SMALL, "experiment": "blind"})
    cell = expand(suite)[0]
    exp_id = tracking.setup(suite.experiment_name)
    missing = tmp_path / "not-mounted"
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(missing))
    with tracking.parent_run(exp_id, suite.name, {}) as parent_id:
        job = executors.Job(exp_id, parent_id, mlflow_store, cwd=str(tmp_path))
        result = executors.run_claimed(cell, job, RunOptions(), {"ray_task": "test/1"})
    assert result["status"] == "FAILED"
    assert socket.gethostname() in result["error"]
    assert str(missing / "brain-tumor-mri-7023") in result["error"]
    run = MlflowClient(mlflow_store).get_run(result["run_id"])
    assert run.info.status == "FAILED" and str(missing) in run.data.tags["error"]
