"""Reading runs back: the claim protocol's view of runs, cell runs for reports, artifacts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from mribench.tracking.store import _quiet, _store_errors, _use_store


@dataclass(frozen=True)
class RunState:
    """What the claim protocol needs to know about a run, without MLflow types."""
    run_id: str
    status: str
    start_time: int  # ms since the epoch, set by the client that created the run
    tags: dict[str, str]
    metrics: dict[str, float]


def _state(run) -> RunState:
    return RunState(run.info.run_id, run.info.status, run.info.start_time or 0,
                    dict(run.data.tags), dict(run.data.metrics))


def runs_of_key(experiment_id: str, run_key: str) -> list[RunState]:
    """Every run of the experiment tagged with this run_key (any status)."""
    return [_state(r) for r in MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.run_key = '{run_key}'", max_results=5000)]


def running_runs(experiment_id: str) -> list[RunState]:
    """Every RUNNING run of the experiment (cells, trials, parents)."""
    return [_state(r) for r in MlflowClient().search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=50000)]


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
