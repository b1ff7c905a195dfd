"""Reading runs back: the claim protocol's view of runs, cell runs for reports, artifacts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from mribench.run import layout
from mribench.run.stopping import holding
from mribench.tracking.store import _quiet, _store_errors, _use_store


@dataclass(frozen=True)
class RunState:
    """What the claim protocol needs to know about a run, without MLflow types."""
    run_id: str
    status: str
    start_time: int  # ms since the epoch, set by the client that created the run
    tags: dict[str, str]
    metrics: dict[str, float]
    name: str = ""  # the run's display name


def _state(run) -> RunState:
    return RunState(run.info.run_id, run.info.status, run.info.start_time or 0,
                    dict(run.data.tags), dict(run.data.metrics), run.info.run_name or "")


@holding
def runs_of_key(experiment_id: str, run_key: str) -> list[RunState]:
    """Every run of the experiment tagged with this run_key (any status)."""
    return [_state(r) for r in MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.run_key = '{run_key}'", max_results=5000)]


@holding
def running_runs(experiment_id: str) -> list[RunState]:
    """Every RUNNING run of the experiment (cells, trials, parents)."""
    return [_state(r) for r in MlflowClient().search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=50000)]


@holding
def search_cells(experiment_id: str) -> pd.DataFrame:
    """Every cell run of the experiment, one row each, with plain column names (see
    `plain_columns`): `run_id`, `status`, `start_time`, ..., the tags (`seed`, `fold`,
    `dataset`, `config_key`, `run_key`, `axis.<name>`, ...), the metrics (`test_accuracy`, ...)
    and the params (`n_train`, `classes`, `split.protocol`, ...)."""
    return plain_columns(mlflow.search_runs([experiment_id], filter_string="tags.role = 'cell'",
                                            max_results=50000))


_SOURCES = ("tags.", "metrics.", "params.")  # MLflow's column prefixes, in order of precedence


def plain_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """MLflow's run frame with its `tags.`/`metrics.`/`params.` prefixes taken off, so no module
    outside tracking/ spells them. Where two columns get one name, the run's attributes
    (`run_id`, `status`, `start_time`, ...) win over its tags, tags over metrics and metrics over
    params, and the loser is dropped: a cell logs `seed` and `fold` both as tags (`fold` "-"
    without folds: what reports group on) and as params of its resolved config ("None")."""
    taken = {c for c in runs.columns if not c.startswith(_SOURCES)}
    renames: dict[str, str] = {}
    for prefix in _SOURCES:
        for column in runs.columns:
            plain = column.removeprefix(prefix)
            if column.startswith(prefix) and plain not in taken:
                renames[column] = plain
                taken.add(plain)
    keep = [c for c in runs.columns if not c.startswith(_SOURCES) or c in renames]
    return runs[keep].rename(columns=renames)


@holding
def child_runs(run_id: str) -> list[RunState] | None:
    """The runs nested under `run_id`, oldest first; None when there is no such run."""
    client = MlflowClient()
    try:
        exp_id = client.get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - MLflow raises several types for an unknown run id
        return None
    return [_state(r) for r in client.search_runs(
        [exp_id], f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"])]


@holding
def experiment_id_of(name: str) -> str | None:
    uri = _use_store()
    with _store_errors(uri), _quiet("mlflow.store.db.utils"):
        exp = mlflow.get_experiment_by_name(name)
    return exp.experiment_id if exp else None


def load_predictions(run_id: str, path: str = layout.PREDICTIONS) -> pd.DataFrame | None:
    """A cell's predictions file (layout.PREDICTIONS: file, true, pred, clean, probabilities;
    or layout.ROBUST_PREDICTIONS); None when the run has none (it failed before testing,
    declared no artefacts, or predates the file)."""
    if path not in artifact_paths(run_id, path.rpartition("/")[0]):
        return None
    return layout.read_predictions(download(run_id, path))


@holding
def artifact_paths(run_id: str, folder: str) -> list[str]:
    """Paths of the artifacts directly inside a run's folder ([] when it has none)."""
    return [f.path for f in MlflowClient().list_artifacts(run_id, folder) if not f.is_dir]


@holding
def download(run_id: str, path: str, dest: str | None = None) -> Path:
    """A run's artifact as a local file (a temporary copy unless dest is given)."""
    # MLflow draws a progress bar per download: dozens of them would bury the console
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path,
                                                    dst_path=dest))


@holding
def latest_suite_run(experiment_id: str, suite_name: str) -> str | None:
    """The newest parent (suite) run of the suite in the experiment, where reports are logged."""
    runs = MlflowClient().search_runs(
        [experiment_id], filter_string=f"tags.role = 'suite' and tags.suite = '{suite_name}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None
