"""The suite's `artifacts`: what each cell keeps beyond its metrics (its model, its checkpoints).

Not part of any cell's run_key: what is kept does not change what a cell computes.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from mribench.config.strict import Strict


class ArtifactsConfig(Strict):
    model: Literal["best", "last", "none"] = Field(
        "best", description="The model each cell logs to MLflow (loadable with mlflow.pyfunc, "
        "`mribench predict`): the best-validation weights (those the test metrics are computed "
        "on), the last epoch's, or none.")
    keep_checkpoints: bool = Field(
        False, description="Keep a cell's training checkpoint after it finished (default: "
        "removed once its run is logged).")
    checkpoint_dir: str | None = Field(
        None, description="Folder of the training checkpoints, one per run_key (default: "
        "<cache folder>/checkpoints).")
