"""Throwaway services for tests: a PostgreSQL cluster on loopback, an MLflow tracking server,
and the password-protected one that docker/compose.yaml runs (docker/tracking-server.sh)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
MLFLOW = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres(password: str | None = None, init_sql: Path | None = None):
    """A throwaway PostgreSQL cluster on loopback (the backend the compose stack uses), user
    `mlflow`. With a password, TCP connections must give it (scram-sha-256), as in the stack;
    `init_sql` runs once over the local socket. Yields the URI of its `postgres` database."""
    initdb = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not initdb:
        pytest.skip("PostgreSQL server not installed (.ci/run installs Debian's postgresql)")
    bindir, port = initdb[-1].parent, free_port()
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    auth = ["-A", "trust"]
    if password:
        (root / "pw").write_text(password + "\n")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={root / 'pw'}"]
    as_postgres = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(data, "postgres")
        if password:
            shutil.chown(root / "pw", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    pg_ctl = as_postgres + [str(bindir / "pg_ctl"), "-D", str(data), "-w"]
    subprocess.run(as_postgres + [str(bindir / "initdb"), "-D", str(data), *auth, "-U", "mlflow"],
                   check=True, capture_output=True)
    subprocess.run(pg_ctl + ["-l", str(data / "log"), "-o",
                             f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        if init_sql:
            subprocess.run([str(bindir / "psql"), "-h", str(data), "-p", str(port), "-U", "mlflow",
                            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-f", str(init_sql)],
                           check=True, capture_output=True)
        yield f"postgresql://mlflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(pg_ctl + ["-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_up(url: str, proc: subprocess.Popen, what: str) -> None:
    for _ in range(240):  # bounded wait for the server to answer
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (an auth-protected path may refuse; it is up)
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited at start")
            time.sleep(0.5)
    pytest.fail(f"{what} did not answer within 2 minutes")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (its web workers too), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def _serving(cmd: list[str], url: str, what: str, env: dict | None = None, log: Path | None = None):
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        _wait_until_up(url, proc, what + (f" (log: {log.read_text()[-2000:]})" if log else ""))
        yield url
    finally:
        _stop_group(proc)
        if log:
            out.close()


@contextmanager
def mlflow_server(store: str, artifacts: Path):
    port = free_port()
    cmd = [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", store, "--artifacts-destination", str(artifacts)]
    with _serving(cmd, f"http://127.0.0.1:{port}", f"mlflow server (store {store})") as url:
        yield url


@contextmanager
def secured_server(tmp: Path, admin_password: str):
    """docker/tracking-server.sh as compose runs it: PostgreSQL with a password (given to the
    script as a secret file), the databases of docker/postgres-init.sql, basic auth on.
    Yields the server's URL and the Optuna storage URL on the same PostgreSQL."""
    db_password = "db-" + os.urandom(8).hex()
    with postgres(db_password, ROOT / "docker" / "postgres-init.sql") as uri:
        secret = tmp / "postgres_password"
        secret.write_text(db_password + "\n")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env |= {"PATH": f"{os.path.dirname(MLFLOW)}:{env.get('PATH', '')}",
                "MLFLOW_DB_HOST": "127.0.0.1", "MLFLOW_DB_PORT": str(urlparse(uri).port),
                "MLFLOW_DB_PASSWORD_FILE": str(secret),
                "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
                "MLFLOW_PORT": str(port), "MLFLOW_ARTIFACTS": str(tmp / "artifacts")}
        cmd = ["sh", str(ROOT / "docker" / "tracking-server.sh"), "--workers", "1"]
        with _serving(cmd, f"http://127.0.0.1:{port}", "docker/tracking-server.sh", env,
                      tmp / "server.log") as url:
            yield url, (f"postgresql+psycopg://mlflow:{db_password}@127.0.0.1:"
                        f"{urlparse(uri).port}/optuna")


@contextmanager
def ray_cluster(env: dict, tmp: Path, nodes: int = 2):
    """A real Ray cluster on loopback: a head and nodes-1 more nodes, one CPU each, token
    authentication on (env holds the token), every port chosen free: other Ray instances on
    this machine are left alone (`ray stop` would end them all). Each node is a
    `ray start --block` process group, stopped by a signal to that group. Yields the address."""
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    port, procs = free_port(), []
    short = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # socket paths must stay short

    def free(*flags: str) -> list[str]:
        return [a for flag in flags for a in (flag, str(free_port()))]

    def node(i: int) -> list[str]:
        own = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
               "--disable-usage-stats", *free("--node-manager-port", "--object-manager-port",
                                              "--dashboard-agent-listen-port",
                                              "--dashboard-agent-grpc-port",
                                              "--runtime-env-agent-port", "--metrics-export-port")]
        if i:
            return [ray_bin, "start", "--address", f"127.0.0.1:{port}", *own]
        return [ray_bin, "start", "--head", "--port", str(port), "--temp-dir", short,
                "--include-dashboard=false", *free("--ray-client-server-port", "--dashboard-port"),
                *own]

    try:
        for i in range(nodes):
            log = tmp / f"ray-node-{i}.log"
            procs.append(subprocess.Popen(node(i), env=env, stdout=open(log, "wb"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
            for _ in range(360):  # `ray start` says so once the node has joined
                if "Ray runtime started" in log.read_text(errors="replace"):
                    break
                if procs[-1].poll() is not None:
                    pytest.fail(f"ray start exited: {log.read_text()[-3000:]}")
                time.sleep(0.5)
            else:
                pytest.fail(f"Ray node {i} did not start within 3 minutes")
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            _stop_group(proc)
        shutil.rmtree(short, ignore_errors=True)
