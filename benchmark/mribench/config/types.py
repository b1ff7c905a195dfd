"""Value types and bases every block of the suite schema shares."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt

from mribench.config.strict import Strict
from mribench.errors import UserError

PosInt = Annotated[int, Field(gt=0)]
StrictPosInt = Annotated[StrictInt, Field(gt=0)]
MAX_EXPERIMENT = 500  # characters in an MLflow experiment name
Fraction = Annotated[float, Field(gt=0, lt=1)]
TrainFraction = Annotated[float, Field(gt=0, le=1)]  # 1.0: the whole class (read as `all`)


class SuiteError(UserError):
    """A suite file that cannot be used; the message names the file and the key."""


class Hashable(Strict):
    """A frozen block with list or dict fields, used as a cache key: hashed by its content."""

    def __hash__(self) -> int:
        return hash(self.model_dump_json())
