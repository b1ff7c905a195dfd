"""Which MLflow store this invocation logs to, and opening it: one line when it cannot be used."""
from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mribench import environment, redact
from mribench.errors import EnvironmentFault, UserError
from mribench.tracking import locks

DEFAULT_URI = "sqlite:///mlflow.db"
_opened: set[str] = set()  # stores this process has probed and found whole
redact.install_log_filter()  # MLflow's own log lines may hold the tracking URI


class StoreFailed(EnvironmentFault):
    """The store failed under a running suite (disk full, server gone past the retries)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TrackingError(UserError):
    """The tracking store cannot be used (unreachable, unwritable); the message says so."""


def setup(experiment: str) -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, else the default store; return the experiment id.

    Holds the store's lock: several invocations creating one fresh SQLite file at once would
    otherwise race in MLflow's table creation. Writes an experiment tag, so an unreachable or
    unwritable store stops the command here with one line, before any work."""
    uri = _use_store()
    with _store_errors(uri), locks.held(uri), _quiet("mlflow.store.db.utils"), \
            _quiet("mlflow.tracking.fluent"):  # "Creating a new experiment": we say where
        _create_beside_store(uri, experiment)
        exp = mlflow.set_experiment(experiment)
        client = MlflowClient()
        if "mlflow.experimentKind" not in exp.tags:
            # opens the UI on its model-training view (runs, charts), not the GenAI one
            client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind",
                                      "custom_model_development")
        client.set_experiment_tag(exp.experiment_id, "mribench.last_invocation",
                                  f"{socket.gethostname()} pid {os.getpid()} {time.time():.0f}")
    return exp.experiment_id


def _create_beside_store(uri: str, experiment: str) -> None:
    """A new experiment in an SQLite store keeps its artifacts in `mlruns/` beside the database
    file, not in the current folder (MLflow's default): a store and its artifacts stay together
    whichever folder a command runs from (`sqlite:///mlflow.db` here: ./mlruns, as before)."""
    db = locks.sqlite_file(uri)
    if db is None or mlflow.get_experiment_by_name(experiment) is not None:
        return
    try:
        mlflow.create_experiment(experiment, artifact_location=(db.parent.resolve() / "mlruns")
                                 .as_uri())
    except MlflowException:  # made meanwhile by another client: theirs stands
        pass


@contextmanager
def _store_errors(uri: str) -> Iterator[None]:
    """Any failure to reach or write the store (SQLite, HTTP, permissions, the lock) becomes one
    line naming the store (its password masked) and what to do."""
    try:
        yield
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:400]
        raise TrackingError(f"tracking store {redact.mask(uri)} cannot be used: "
                            f"{redact.mask(first)}. Make it reachable and writable, or point "
                            "MLFLOW_TRACKING_URI at one that is (e.g. sqlite:///mlflow.db in a "
                            "folder you can write)") from None


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """MLflow logs store errors with a full traceback before raising them; the raised error is
    reported as one line instead."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _use_store(open_it: bool = True) -> str:
    """Point MLflow at the configured store; with open_it (the store is about to be used), probe
    a server and make sure an SQLite file exists whole first."""
    # set explicitly every time: an earlier set_tracking_uri in this process would otherwise
    # shadow a changed environment variable
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if open_it and uri not in _opened:  # once per process: later failures are mid-suite ones
        probe(uri)
        db = locks.sqlite_file(uri)
        if db is not None and "mode=ro" not in uri:
            with _store_errors(uri):
                _ensure_sqlite_store(uri, db)
        _opened.add(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def _ensure_sqlite_store(uri: str, db: Path) -> None:
    """A fresh SQLite store appears whole or not at all. MLflow creates and migrates its tables
    in place, so a kill in that second or two used to leave a half-made file that every later
    invocation failed on; here the tables are made in a temporary file beside the target, under
    the store's lock, and renamed into place (an atomic rename on one file system). A file that
    exists but is not a complete store is reported, never touched."""
    if db.exists():
        _wait_complete(db)
        return
    with locks.held(uri):
        if db.exists():  # another invocation made it while we waited
            return
        for stale in db.parent.glob(f".{db.name}.creating-*"):  # their makers are dead: we hold the lock
            stale.unlink(missing_ok=True)
        tmp = db.with_name(f".{db.name}.creating-{os.getpid()}")
        tmp_uri = f"sqlite:///{tmp}"
        with _quiet("mlflow.store.db.utils"), _quiet("alembic.runtime.migration"):
            MlflowClient(tracking_uri=tmp_uri).search_experiments(max_results=1)
        # a hard link publishes it only if no file is there: another MLflow client (the UI, a
        # script; they hold no lock of ours) may have made one meanwhile, and it is kept
        try:
            os.link(tmp, db)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            os.replace(tmp, db)
        finally:
            tmp.unlink(missing_ok=True)
    _wait_complete(db)


def _wait_complete(db: Path, settle_s: float = 10.0) -> None:
    """`_check_complete`, allowing a file that another MLflow client is creating right now (in
    place, as MLflow does) a few seconds to become complete."""
    deadline = time.monotonic() + 3 * settle_s
    while True:
        try:
            _check_complete(db)
            return
        except TrackingError:
            if time.time() - db.stat().st_mtime > settle_s or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _check_complete(db: Path) -> None:
    """Raise one line when `db` is not a complete MLflow store, saying whether it can go."""
    import sqlite3

    if db.stat().st_size == 0:
        raise TrackingError(f"{db} is an empty file, not an MLflow store: remove it and run again")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            version = (con.execute("select version_num from alembic_version").fetchone()
                       if "alembic_version" in tables else None)
            runs = con.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        raise TrackingError(f"{db} is not an SQLite database ({err}): it is not an MLflow store; "
                            "move it away, or point MLFLOW_TRACKING_URI elsewhere") from None
    half = any(name.startswith("_alembic_tmp") for name in tables)
    if version is not None and not half and version[0] == _head_revision():
        return
    if version is not None and not half and runs:
        return  # an older or newer MLflow's complete store: MLflow itself says what to do
    what = "a half-made MLflow store (a first invocation was killed while creating it)"
    if runs:
        raise TrackingError(f"{db} is {what} but holds {runs} run(s): it is not ours to touch; "
                            "back it up and repair it with `mlflow db upgrade`, or point "
                            "MLFLOW_TRACKING_URI elsewhere")
    raise TrackingError(f"{db} is {what}; it holds no runs: remove it (and {db.name}.lock) "
                        "and run again")


def _head_revision() -> str:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_current_head()


def tracking_uri() -> str:
    """The store's URI with any password masked: for printing."""
    return redact.mask(mlflow.get_tracking_uri())


def store_uri() -> str:
    """The store's URI as configured (may hold credentials): for locks, never for printing."""
    return mlflow.get_tracking_uri()


def configured_store() -> str:
    """Point MLflow at the store this invocation logs to (MLFLOW_TRACKING_URI, else the
    default) and return its URI (may hold credentials: never for printing). Opens nothing: an
    executor that refuses the store must leave no file behind."""
    return _use_store(open_it=False)


def use_uri(uri: str) -> None:
    """Log to this store from now on (a Ray worker: the driver's store, whatever its own
    environment says). A launcher's MLFLOW_RUN_ID must not be resumed by a worker."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    _use_store()


def store_failure(err: BaseException) -> str | None:
    """One line saying how the store failed, when `err` (or what caused it) is a failure of the
    store itself: MLflow's own errors, SQLite's, HTTP connection errors, a full disk. None for
    everything else (a cell's own bug, bad input)."""
    import errno
    import sqlite3

    from mlflow.exceptions import MlflowException

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, UserError):
            return None  # already a one-line message for the user (e.g. unusable at the start)
        module = type(seen).__module__ or ""
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return f"disk full ({seen.filename or 'the store or its artifacts'})"
        if isinstance(seen, (MlflowException, sqlite3.Error)) or \
                module.startswith(("sqlalchemy", "requests", "urllib3")):
            text = str(seen).strip().splitlines() or [type(seen).__name__]
            return redact.mask(text[0])[:300]
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return None


@contextmanager
def short_retries() -> Iterator[None]:
    """For best-effort calls to a store that just failed: no retry loop, a short timeout."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                            "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def probe(uri: str) -> None:
    """A tracking server that does not answer fails at once, in one line, instead of after
    MLflow's minutes of retries. Any HTTP answer counts as reachable (auth is checked later)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    seconds = environment.store_probe_seconds()
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=seconds).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"tracking server {redact.mask(uri)} is unreachable (no answer within "
                            f"{seconds:g} s: {reason}); start it or point MLFLOW_TRACKING_URI at "
                            "one that runs (BENCHMARK_STORE_PROBE_S sets the wait)") from None
