"""The only module that talks to MLflow.

One experiment per suite, a parent run per invocation, a nested child run per cell. A cell's
identity is its `run_key` tag, which is how a rerun finds finished work.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

import mribench
from mribench import locks, redact

DEFAULT_URI = "sqlite:///mlflow.db"
_MAX_PARAM = 6000  # MLflow's limit on a param value is 6000 characters
redact.install_log_filter()  # MLflow's own log lines may hold the tracking URI


class TrackingError(ValueError):
    """The tracking store cannot be used (unreachable, unwritable); the message says so."""


@dataclass(frozen=True)
class RunState:
    """What the claim protocol needs to know about a run, without MLflow types."""
    run_id: str
    status: str
    start_time: int  # ms since the epoch, set by the client that created the run
    tags: dict[str, str]
    metrics: dict[str, float]


def setup(experiment: str) -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, else the default store; return the experiment id.

    Holds the store's lock: several invocations creating one fresh SQLite file at once would
    otherwise race in MLflow's table creation. Writes an experiment tag, so an unreachable or
    unwritable store stops the command here with one line, before any work."""
    uri = _use_store()
    with _store_errors(uri), locks.held(uri), _quiet("mlflow.store.db.utils"), \
            _quiet("mlflow.tracking.fluent"):  # "Creating a new experiment": we say where
        exp = mlflow.set_experiment(experiment)
        client = MlflowClient()
        if "mlflow.experimentKind" not in exp.tags:
            # opens the UI on its model-training view (runs, charts), not the GenAI one
            client.set_experiment_tag(exp.experiment_id, "mlflow.experimentKind",
                                      "custom_model_development")
        client.set_experiment_tag(exp.experiment_id, "mribench.last_invocation",
                                  f"{socket.gethostname()} pid {os.getpid()} {time.time():.0f}")
    return exp.experiment_id


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


def _use_store() -> str:
    # set explicitly every time: an earlier set_tracking_uri in this process would otherwise
    # shadow a changed environment variable
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    mlflow.set_tracking_uri(uri)
    return uri


def tracking_uri() -> str:
    """The store's URI with any password masked: for printing."""
    return redact.mask(mlflow.get_tracking_uri())


def store_uri() -> str:
    """The store's URI as configured (may hold credentials): for locks, never for printing."""
    return mlflow.get_tracking_uri()


def _state(run) -> RunState:
    return RunState(run.info.run_id, run.info.status, run.info.start_time or 0,
                    dict(run.data.tags), dict(run.data.metrics))


def configured_store() -> str:
    """Point MLflow at the store this invocation logs to (MLFLOW_TRACKING_URI, else the
    default) and return its URI (may hold credentials: never for printing)."""
    return _use_store()


def use_uri(uri: str) -> None:
    """Log to this store from now on (a Ray worker: the driver's store, whatever its own
    environment says). A launcher's MLFLOW_RUN_ID must not be resumed by a worker."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_RUN_ID", None)
    _use_store()


def runs_of_key(experiment_id: str, run_key: str) -> list[RunState]:
    """Every run of the experiment tagged with this run_key (any status)."""
    return [_state(r) for r in MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.run_key = '{run_key}'", max_results=5000)]


def running_runs(experiment_id: str) -> list[RunState]:
    """Every RUNNING run of the experiment (cells, trials, parents)."""
    return [_state(r) for r in MlflowClient().search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=50000)]


def create_run(experiment_id: str, name: str, tags: dict[str, str],
               parent_run_id: str | None = None) -> str:
    """A RUNNING run that no process has made active yet (a claim); `cell_run` resumes it."""
    extra = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
    return MlflowClient().create_run(experiment_id, run_name=name,
                                     tags={**tags, **extra}).info.run_id


def close_run(run_id: str, status: str, reason: str) -> None:
    client = MlflowClient()
    client.set_tag(run_id, "error", redact.mask(reason)[:5000])
    client.set_terminated(run_id, status)


def set_run_tag(run_id: str, key: str, value: str) -> None:
    MlflowClient().set_tag(run_id, key, value)


def close_running(experiment_id: str, tags: dict[str, str], status: str, reason: str) -> int:
    """End the RUNNING runs carrying all these tags with `status` and the reason as a tag."""
    match = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = MlflowClient().search_runs([experiment_id],
                                      filter_string=f"attributes.status = 'RUNNING' and {match}")
    for run in runs:
        close_run(run.info.run_id, status, reason)
    return len(runs)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def parent_run(experiment_id: str, suite_name: str, params: dict[str, Any],
               role: str = "suite", run_name: str | None = None,
               tags: dict[str, str] | None = None) -> Iterator[str]:
    """The invocation's run. Under `mlflow run` the launcher's run may live in another
    experiment; it then gets a tag pointing at the suite's parent run. Ends like `cell_run`."""
    launcher = os.environ.pop("MLFLOW_RUN_ID", None)
    run = mlflow.start_run(experiment_id=experiment_id,
                           run_name=run_name or f"{suite_name} {role}")
    try:
        mlflow.set_tags({**(tags or {}), "suite": suite_name, "role": role,
                         "git_commit": git_commit(), "package_version": mribench.__version__})
        log_params(params)
        if launcher and launcher != run.info.run_id:
            MlflowClient().set_tag(launcher, "mribench.suite_run_id", run.info.run_id)
            mlflow.set_tag("mribench.launcher_run_id", launcher)
        yield run.info.run_id
    except BaseException as err:
        _end_with(err, ())
        raise
    mlflow.end_run("FINISHED")


@contextmanager
def cell_run(title: str, tags: dict[str, str], role: str = "cell",
             stopped: tuple[type[BaseException], ...] = (),
             run_id: str | None = None) -> Iterator[str]:
    """A nested run (or the claimed run `run_id`, resumed). An exception marks it FAILED with
    the error as a tag, then propagates; an interruption (a signal, Ctrl-C) or an exception of
    the `stopped` types (e.g. a pruned tuning trial) ends it KILLED instead."""
    if run_id:
        run = mlflow.start_run(run_id=run_id, nested=True)
    else:
        run = mlflow.start_run(run_name=title, nested=True, tags={**tags, "role": role})
    mlflow.set_tags({"git_commit": git_commit(), "package_version": mribench.__version__})
    try:
        yield run.info.run_id
    except BaseException as err:
        _end_with(err, stopped)
        raise
    mlflow.end_run("FINISHED")


def _end_with(err: BaseException, stopped: tuple[type[BaseException], ...]) -> None:
    """End the active run after `err`: KILLED for interruptions (not an Exception: a signal,
    Ctrl-C) and `stopped` types, FAILED for errors; the reason as the `error` tag."""
    killed = not isinstance(err, Exception) or isinstance(err, stopped)
    tags = {"error": redact.mask(f"{type(err).__name__}: {err}")[:5000]}
    if getattr(err, "signum", None):
        tags["stop_signal"] = err.name
    try:
        mlflow.set_tags(tags)
    finally:
        mlflow.end_run("KILLED" if killed else "FAILED")


def log_params(params: dict[str, Any]) -> None:
    clean = {k: _param_value(v) for k, v in params.items()}
    items = list(clean.items())
    for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
        mlflow.log_params(dict(items[i:i + 100]))


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return redact.mask(text)[:_MAX_PARAM]


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: redact.mask(str(v)) for k, v in tags.items()})


def log_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, path)
    plt.close(fig)


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def log_dict(data: dict, path: str) -> None:
    mlflow.log_dict(data, path)


def log_arrays(arrays: dict[str, Any], path: str) -> None:
    """Named numpy arrays as one compressed .npz artifact at `path` (e.g. explanations/maps.npz)."""
    import tempfile

    import numpy as np

    folder, _, name = path.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        np.savez_compressed(local, **arrays)
        mlflow.log_artifact(str(local), artifact_path=folder or None)


def log_frame(frame: pd.DataFrame, path: str, index: bool = False) -> None:
    mlflow.log_text(frame.to_csv(index=index), path)


def log_split(rows: list[dict], digest: str, name: str, context: str = "split") -> None:
    """The exact split as a CSV artifact, registered as a dataset input so its digest shows."""
    frame = pd.DataFrame(rows)
    path = f"data/{context}.csv"
    log_frame(frame, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's note on integer schema columns
        # the rows are the dataset (the CSV artifact above); no external source to point at
        dataset = mlflow.data.from_pandas(frame, name=name, digest=digest[:36])
        mlflow.log_input(dataset, context=context)


def search_cells(experiment_id: str) -> pd.DataFrame:
    """Every cell run of the experiment with its tags, params and metrics (for reports)."""
    return mlflow.search_runs([experiment_id], filter_string="tags.role = 'cell'",
                              max_results=50000)


def experiment_id_of(name: str) -> str | None:
    uri = _use_store()
    with _store_errors(uri), _quiet("mlflow.store.db.utils"):
        exp = mlflow.get_experiment_by_name(name)
    return exp.experiment_id if exp else None


def load_predictions(run_id: str) -> pd.DataFrame | None:
    """A cell's metrics/predictions.csv (file, true, pred, clean, probabilities); None when the
    run has none (it failed before testing, or predates the file)."""
    if "metrics/predictions.csv" not in artifact_paths(run_id, "metrics"):
        return None
    return pd.read_csv(download(run_id, "metrics/predictions.csv"))


def artifact_paths(run_id: str, folder: str) -> list[str]:
    """Paths of the artifacts directly inside a run's folder ([] when it has none)."""
    return [f.path for f in MlflowClient().list_artifacts(run_id, folder) if not f.is_dir]


def download(run_id: str, path: str, dest: str | None = None) -> Path:
    """A run's artifact as a local file (a temporary copy unless dest is given)."""
    # MLflow draws a progress bar per download: dozens of them would bury the console
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                    dst_path=dest))


def latest_suite_run(experiment_id: str, suite_name: str) -> str | None:
    """The newest parent (suite) run of the suite in the experiment, where reports are logged."""
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.role = 'suite' and tags.suite = '{suite_name}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def log_folder(run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Every file under a local folder into a (possibly finished) run's artifacts."""
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path)
