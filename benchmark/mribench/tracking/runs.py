"""Writing runs: a parent run per invocation, a nested run per cell, and what they log.

A cell's identity is its `run_key` tag, which is how a rerun finds finished work.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

import mribench
from mribench import redact
from mribench.run import layout
from mribench.run.stopping import held, holding
from mribench.tracking.store import short_retries, store_failure

_MAX_PARAM = 6000  # MLflow's limit on a param value is 6000 characters


@holding
def create_run(experiment_id: str, name: str, tags: dict[str, str],
               parent_run_id: str | None = None) -> str:
    """A RUNNING run that no process has made active yet (a claim); `cell_run` resumes it."""
    extra = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
    return MlflowClient().create_run(experiment_id, run_name=name,
                                     tags={**tags, **extra}).info.run_id


@holding
def close_run(run_id: str, status: str, reason: str) -> None:
    client = MlflowClient()
    client.set_tag(run_id, "error", redact.mask(reason)[:5000])
    client.set_terminated(run_id, status)


@holding
def close_if_running(run_id: str, status: str, reason: str, stop_signal: str | None = None) -> str:
    """End the run with `status` if it is still RUNNING (an error before its context started,
    or one its context did not see); the status it ends with either way."""
    client = MlflowClient()
    ended = client.get_run(run_id).info.status
    if ended != "RUNNING":
        return ended
    if stop_signal:
        client.set_tag(run_id, "stop_signal", stop_signal)
    close_run(run_id, status, reason)
    return status


@holding
def set_run_tag(run_id: str, key: str, value: str) -> None:
    MlflowClient().set_tag(run_id, key, value)


@holding
def close_running(experiment_id: str, tags: dict[str, str], status: str, reason: str) -> int:
    """End the RUNNING runs carrying all these tags with `status` and the reason as a tag."""
    match = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = MlflowClient().search_runs([experiment_id],
                                      filter_string=f"attributes.status = 'RUNNING' and {match}")
    for run in runs:
        close_run(run.info.run_id, status, reason)
    return len(runs)


@functools.cache  # one subprocess per process, not one per cell
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

    def describe(run) -> None:
        mlflow.set_tags({**(tags or {}), "suite": suite_name, "role": role})
        log_params(params)
        if launcher and launcher != run.info.run_id:
            MlflowClient().set_tag(launcher, "mribench.suite_run_id", run.info.run_id)
            mlflow.set_tag("mribench.launcher_run_id", launcher)
    with _active(lambda: mlflow.start_run(experiment_id=experiment_id,
                                          run_name=run_name or f"{suite_name} {role}"),
                 describe, ()) as run_id:
        yield run_id


@contextmanager
def cell_run(title: str, tags: dict[str, str], role: str = "cell",
             stopped: tuple[type[BaseException], ...] = (),
             run_id: str | None = None) -> Iterator[str]:
    """A nested run (or the claimed run `run_id`, resumed). An exception marks it FAILED with
    the error as a tag, then propagates; an interruption (a signal, Ctrl-C) or an exception of
    the `stopped` types (e.g. a pruned tuning trial) ends it KILLED instead."""
    def start():
        if run_id:
            return mlflow.start_run(run_id=run_id, nested=True)
        return mlflow.start_run(run_name=title, nested=True, tags={**tags, "role": role})
    with _active(start, lambda run: None, stopped) as started_id:
        yield started_id


@contextmanager
def _active(start, describe, stopped: tuple[type[BaseException], ...]) -> Iterator[str]:
    """MLflow's active run from `start()`, described by `describe(run)` and the version tags,
    ended FINISHED, or as `_end_with` says after an error. A stop while the run starts is held
    until it is the active run, then ends it; an error in `start()` itself ends nothing (the
    active run is then the parent's, or none)."""
    commit, started = git_commit(), False
    try:
        with held():
            run = start()
            started = True
            mlflow.set_tags({"git_commit": commit, "package_version": mribench.__version__})
            describe(run)
        yield run.info.run_id
    except BaseException as err:
        if started:
            _end_with(err, stopped)
        raise
    with held():
        mlflow.end_run("FINISHED")


@holding
def _end_with(err: BaseException, stopped: tuple[type[BaseException], ...]) -> None:
    """End the active run after `err`: KILLED for interruptions (not an Exception: a signal,
    Ctrl-C) and `stopped` types, FAILED for errors; the reason as the `error` tag. Best effort:
    when the store itself is what failed, these calls fail too, quickly (no retry loop), and
    the original error is what propagates."""
    killed = not isinstance(err, Exception) or isinstance(err, stopped)
    tags = {"error": redact.mask(f"{type(err).__name__}: {err}")[:5000]}
    if getattr(err, "signum", None):
        tags["stop_signal"] = err.name
    dead = store_failure(err) is not None
    with short_retries() if dead else contextlib.nullcontext():
        try:
            mlflow.set_tags(tags)
        except Exception:
            if not dead:
                raise
        finally:
            try:
                mlflow.end_run("KILLED" if killed else "FAILED")
            except Exception:
                if not dead:
                    raise


@holding
def log_params(params: dict[str, Any]) -> None:
    clean = {k: _param_value(v) for k, v in params.items()}
    items = list(clean.items())
    for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
        mlflow.log_params(dict(items[i:i + 100]))


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return redact.mask(text)[:_MAX_PARAM]


@holding
def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


@holding
def set_tags(tags: dict[str, Any]) -> None:
    mlflow.set_tags({k: redact.mask(str(v)) for k, v in tags.items()})


@holding
def log_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, path)
    plt.close(fig)


@holding
def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


@holding
def log_dict(data: dict, path: str) -> None:
    mlflow.log_dict(data, path)


@holding
def log_arrays(arrays: dict[str, Any], path: str) -> None:
    """Named numpy arrays as one compressed .npz artifact at `path` (e.g. explanations/maps.npz)."""
    import tempfile

    import numpy as np

    folder, _, name = path.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / name
        np.savez_compressed(local, **arrays)
        mlflow.log_artifact(str(local), artifact_path=folder or None)


@holding
def log_frame(frame: pd.DataFrame, path: str, index: bool = False) -> None:
    mlflow.log_text(frame.to_csv(index=index), path)


@holding
def log_split(rows: list[dict], digest: str, name: str, context: str = "split") -> None:
    """The exact split as a CSV artifact, registered as a dataset input so its digest shows."""
    frame = pd.DataFrame(rows)
    path = layout.split_file(context)
    log_frame(frame, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's note on integer schema columns
        # the rows are the dataset (the CSV artifact above); no external source to point at
        dataset = mlflow.data.from_pandas(frame, name=name, digest=digest[:36])
        mlflow.log_input(dataset, context=context)


@holding
def log_folder(run_id: str, folder: str | Path, artifact_path: str) -> None:
    """Every file under a local folder into a (possibly finished) run's artifacts."""
    MlflowClient().log_artifacts(run_id, str(folder), artifact_path)
