"""The two small types every data module shares: the error and one labelled file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Any data problem: missing folder, bad files, empty or missing classes. Names what it found."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into PreparedData.classes
