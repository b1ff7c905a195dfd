"""The two small types every data module shares: the error and one labelled file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mribench.errors import UserError


class DataError(UserError):
    """Any data problem: missing folder, bad files, empty or missing classes. Names what it found."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into PreparedData.classes
