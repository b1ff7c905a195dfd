"""The suite's `resources`: what one cell asks of a Ray cluster (`--executor ray`).

The local loop ignores it, and it is not part of any cell's run_key: where a cell ran does not
change what it computes.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mribench.config.strict import Strict


class ResourcesConfig(Strict):
    # None: one GPU per cell when the cluster has GPUs and --device is not cpu; 0.5 = two per GPU
    gpus_per_cell: Annotated[float, Field(ge=0)] | None = Field(
        None, description="GPUs per cell; null: one when the cluster has GPUs and --device is not cpu; "
        "0.5 puts two cells on each GPU.")
    cpus_per_cell: Annotated[float, Field(gt=0)] = Field(
        1, description="CPUs per cell; Ray also sets the cell's thread count.")
    max_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="Retries of a cell whose worker process died.")
