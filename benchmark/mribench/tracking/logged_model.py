"""Logged models (MLflow 3): a cell's trained network as an `mlflow.pyfunc` model, the registry.

The pyfunc model wraps a package folder (models/packaged.py) and carries its own preprocessing:
`mlflow.pyfunc.load_model(uri).predict(frame)` takes a frame with an `image` column (file bytes,
base64 in JSON for `mlflow models serve`; in Python also a uint8 array or a path) or a `path`
column (a file readable where the model runs), and returns the predicted class and one
`prob_<class>` column per class. The probabilities are calibrated by default (divided by the
cell's temperature, fitted on its validation split: run/calibrated.py); the inference parameter
`raw_probabilities=True` (`predict(frame, params={"raw_probabilities": True})`) gives the
network's raw softmax instead. The model is logged from code (tracking/model_code.py, nothing
pickled); `mribench` must be installed where it is loaded or served (`--env-manager local`).
"""
from __future__ import annotations

import logging
import os
from importlib import metadata as dist
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from mribench.errors import UserError
from mribench.run.stopping import holding

NAME = "model"  # the logged model's name in its run: runs:/<run id>/model


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc face of `models.packaged.Predictor`."""

    def load_context(self, context) -> None:
        from mribench import environment
        from mribench.models.packaged import Predictor

        device = environment.predict_device()
        self.predictor = Predictor(context.artifacts["package"], device=device)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        raw = bool((params or {}).get("raw_probabilities", False))
        return self.predictor.frame(images_of(model_input), raw=raw)


def images_of(model_input) -> list:
    """One image per row: the `image` column where it holds a value, else the `path` column; a
    bare list, array batch or single value is taken as images too."""
    import numpy as np

    if isinstance(model_input, pd.DataFrame):
        image = model_input.get("image", pd.Series([None] * len(model_input)))
        path = model_input.get("path", pd.Series([None] * len(model_input)))
        out = []
        for i, (img, p) in enumerate(zip(image.tolist(), path.tolist())):
            value = img if _given(img) else p
            if not _given(value):
                raise UserError(f"row {i}: neither an image nor a path")
            out.append(value)
        return out
    if isinstance(model_input, np.ndarray) and model_input.dtype != object and \
            model_input.ndim == 4:
        return list(model_input)  # a batch of [H, W, C] arrays
    return list(model_input) if isinstance(model_input, (list, tuple)) else [model_input]


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def signature(classes: list[str]) -> ModelSignature:
    from mribench.stats.metrics import safe_name

    inputs = Schema([ColSpec("binary", "image", required=False),
                     ColSpec("string", "path", required=False)])
    outputs = Schema([ColSpec("string", "predicted"),
                      *(ColSpec("double", f"prob_{safe_name(c)}") for c in classes)])
    params = ParamSchema([ParamSpec("raw_probabilities", "boolean", False)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def requirements() -> list[str]:
    """Pinned to what trained the model (local version labels such as +cu130 dropped); given,
    so MLflow does not load the model in a subprocess per cell to infer them."""
    out = []
    for name in ("brain-mri-benchmark", "mlflow", "torch", "torchvision", "timm", "pillow",
                 "numpy", "pandas"):
        try:
            out.append(f"{name}=={dist.version(name).split('+')[0]}")
        except dist.PackageNotFoundError:
            out.append(name)
    return out


@holding
def log_model(package: Path, example: bytes, classes: list[str], metadata: dict) -> dict:
    """Log the package as the active run's model; returns its id, URI and artifact size."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # one bar per file otherwise
    log = logging.getLogger("mlflow.pyfunc")  # "Validating input example ...", once per cell
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        info = mlflow.pyfunc.log_model(
            name=NAME, python_model=str(Path(__file__).with_name("model_code.py")),
            artifacts={"package": str(package)}, signature=signature(classes),
            input_example=pd.DataFrame({"image": [example]}), pip_requirements=requirements(),
            metadata=metadata)
    finally:
        log.setLevel(level)
    return {"model_id": info.model_id, "model_uri": info.model_uri}


@holding
def load(uri: str):
    return mlflow.pyfunc.load_model(uri)


@holding
def run_of_model(uri: str) -> str | None:
    """The run that logged the model at `uri` (runs:/, models:/NAME@alias, models:/m-id)."""
    return mlflow.models.get_model_info(uri).run_id


@holding
def logged_model_uri(run_id: str) -> str | None:
    """models:/m-<id> of the model the run logged, None when it logged none (searched in the
    run's experiment: the search needs one)."""
    found = mlflow.search_logged_models(experiment_ids=[experiment_of(run_id)],
                                        filter_string=f"source_run_id = '{run_id}'",
                                        output_format="list")
    return next((f"models:/{m.model_id}" for m in found if m.name == NAME), None)


@holding
def download_package(uri: str, dest: str | None = None) -> Path:
    """The package folder inside a logged model, as local files."""
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dest))
    return root / "artifacts" / "package"


def name_problem(name: str) -> str | None:
    """Why MLflow would refuse `name` for a registered model (its own check), or None."""
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
    except MlflowException as err:
        return err.message.splitlines()[0]
    return None


@holding
def register(model_uri: str, name: str, alias: str, description: str) -> int:
    """A new version of registered model `name` from `model_uri`, given `alias` (moved from any
    older version) and the description; returns the version number."""
    version = mlflow.register_model(model_uri, name)
    client = MlflowClient()
    client.update_model_version(name, version.version, description=description)
    client.update_registered_model(name, description=description)
    client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


@holding
def experiment_of(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.experiment_id


@holding
def run_metrics(run_id: str) -> dict[str, float]:
    return dict(MlflowClient().get_run(run_id).data.metrics)
