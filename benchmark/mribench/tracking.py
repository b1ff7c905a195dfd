"""The only module that talks to MLflow.

One experiment per suite, a parent run per invocation, a nested child run per cell. A cell's
identity is its `run_key` tag, which is how a rerun finds finished work.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

import mribench

DEFAULT_URI = "sqlite:///mlflow.db"
_MAX_PARAM = 6000  # MLflow's limit on a param value is 6000 characters


def setup(experiment: str) -> str:
    """Point MLflow at MLFLOW_TRACKING_URI, else the default store; return the experiment id."""
    _use_store()
    exp = mlflow.set_experiment(experiment)
    if "mlflow.experimentKind" not in exp.tags:
        # opens the UI on its model-training view (runs, charts) rather than the GenAI one
        MlflowClient().set_experiment_tag(exp.experiment_id, "mlflow.experimentKind",
                                          "custom_model_development")
    return exp.experiment_id


def _use_store() -> None:
    # set explicitly every time: an earlier set_tracking_uri in this process would otherwise
    # shadow a changed environment variable
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def _cell_runs(experiment_id: str, status: str) -> list:
    return MlflowClient().search_runs(
        [experiment_id], filter_string=f"attributes.status = '{status}' and tags.run_key != ''",
        max_results=50000)


def finished_keys(experiment_id: str) -> dict[str, tuple[str, float | None]]:
    """run_key -> (run_id, test_accuracy) of every FINISHED cell run in the experiment."""
    return {r.data.tags["run_key"]: (r.info.run_id, r.data.metrics.get("test_accuracy"))
            for r in _cell_runs(experiment_id, "FINISHED") if "run_key" in r.data.tags}


def _alive_here(tags: dict[str, str]) -> bool:
    """Whether the invocation that owns a RUNNING run is still alive on this machine."""
    if tags.get("host") != socket.gethostname() or not tags.get("pid", "").isdigit():
        return False  # another machine's run cannot be checked: a RUNNING leftover is stale
    try:
        os.kill(int(tags["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def triage_running(experiment_id: str, keys: set[str]) -> tuple[int, dict[str, str]]:
    """Sort RUNNING cells of these keys: those of a dead invocation become KILLED (to be
    retried, never counted); those of a live invocation on this machine are returned as
    run_key -> run_id so this invocation leaves them to it instead of duplicating them."""
    client, killed, busy = MlflowClient(), 0, {}
    for run in _cell_runs(experiment_id, "RUNNING"):
        key = run.data.tags.get("run_key")
        if key not in keys:
            continue
        if _alive_here(run.data.tags):
            busy[key] = run.info.run_id
            continue
        client.set_tag(run.info.run_id, "error", "interrupted: the invocation died")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        killed += 1
    return killed, busy


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def parent_run(experiment_id: str, suite_name: str, params: dict[str, Any],
               role: str = "suite", run_name: str | None = None) -> Iterator[str]:
    """The invocation's run. Under `mlflow run` the launcher's run may live in another
    experiment; it then gets a tag pointing at the suite's parent run."""
    launcher = os.environ.pop("MLFLOW_RUN_ID", None)
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=run_name or f"{suite_name} {role}") as run:
        mlflow.set_tags({"suite": suite_name, "role": role, "git_commit": git_commit(),
                         "package_version": mribench.__version__})
        log_params(params)
        if launcher and launcher != run.info.run_id:
            MlflowClient().set_tag(launcher, "mribench.suite_run_id", run.info.run_id)
            mlflow.set_tag("mribench.launcher_run_id", launcher)
        yield run.info.run_id


@contextmanager
def cell_run(title: str, tags: dict[str, str], role: str = "cell",
             stopped: tuple[type[BaseException], ...] = ()) -> Iterator[str]:
    """A nested run; an exception marks it FAILED with the error as a tag, then propagates.
    Exceptions of the `stopped` types (e.g. a pruned tuning trial) end it as KILLED instead."""
    run = mlflow.start_run(run_name=title, nested=True)
    mlflow.set_tags({**tags, "role": role, "git_commit": git_commit(),
                     "package_version": mribench.__version__, "host": socket.gethostname(),
                     "pid": str(os.getpid())})
    try:
        yield run.info.run_id
    except BaseException as err:
        status = "KILLED" if isinstance(err, (KeyboardInterrupt, *stopped)) else "FAILED"
        mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:5000])
        mlflow.end_run(status)
        raise
    mlflow.end_run("FINISHED")


def log_params(params: dict[str, Any]) -> None:
    clean = {k: _param_value(v) for k, v in params.items()}
    items = list(clean.items())
    for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
        mlflow.log_params(dict(items[i:i + 100]))


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:_MAX_PARAM]


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


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
    _use_store()
    exp = mlflow.get_experiment_by_name(name)
    return exp.experiment_id if exp else None


def load_predictions(run_id: str) -> pd.DataFrame:
    """A cell's metrics/predictions.csv (file, true, pred, probabilities)."""
    path = mlflow.artifacts.download_artifacts(run_id=run_id,
                                               artifact_path="metrics/predictions.csv")
    return pd.read_csv(path)
