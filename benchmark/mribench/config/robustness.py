"""The suite's `robustness` block: which MRI artefacts, at which severities, every cell's test
images are also scored under (mribench/robustness; the severity table: robustness/severities.py).

Given per suite, and per dataset to override it. `reference` names the configuration the
report normalises the corruption errors by (ImageNet-C's mCE); it changes no cell's results, so
it is not part of any run_key.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from mribench.config.strict import Strict
from mribench.errors import UserError
from mribench.robustness.severities import ARTEFACTS, SEVERITIES, VERSION


class ReferenceConfig(Strict):
    model: str = Field(min_length=1, description="A model of the suite (label or name).")
    strategy: str = Field(min_length=1, description="A strategy of the suite (label or name).")


class RobustnessConfig(Strict):
    artefacts: list[Literal[ARTEFACTS]] = Field(
        default_factory=lambda: list(ARTEFACTS), min_length=1,
        description=f"MRI artefacts (TorchIO) the test images are scored under: {list(ARTEFACTS)}.")
    severities: list[Annotated[int, Field(ge=min(SEVERITIES), le=max(SEVERITIES))]] = Field(
        default_factory=lambda: list(SEVERITIES), min_length=1,
        description="Severities 1 (barely visible) to 5 (plainly degraded, anatomy recognisable).")
    reference: ReferenceConfig | None = Field(
        None, description="The configuration whose corruption errors normalise the mCE in the "
        "report (ImageNet-C); without it the report gives mCA and relative drops only.")

    @field_validator("artefacts", "severities")
    @classmethod
    def _distinct(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise UserError(f"each value once, got {value}")
        return value

    def identity(self) -> dict:
        """What changes a cell's results (the reference only changes the report). The severity
        table's version is part of it: after a change to the table, resuming a suite scores its
        cells again and the report leaves the older cells out, instead of mixing the two."""
        return {"artefacts": list(self.artefacts), "severities": list(self.severities),
                "table_version": VERSION}


def check_reference(robustness: RobustnessConfig | None, models: set[str], strategies: set[str],
                    where: str) -> None:
    ref = robustness.reference if robustness else None
    if ref is not None and (ref.model not in models or ref.strategy not in strategies):
        raise UserError(f"{where}.reference names model {ref.model!r} / strategy "
                         f"{ref.strategy!r}; the suite declares models {sorted(models)} and "
                         f"strategies {sorted(strategies)}")
