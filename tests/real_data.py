"""Where the tests find the real datasets, and what they use when one is absent.

The real sets are looked for in BENCHMARK_DATA_DIR, else in ../shared/data beside the
repository (where CI has them). Tests that need a full set skip with the reason when it is
absent; tests that only need a few real MRI images use the 7023 set's sample shipped with the
package instead, so they run on a bare machine too.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mribench.data.registry import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BENCHMARK_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()
MRI_7023 = "brain-tumor-mri-7023"
SAMPLE = "brain-tumor-mri-7023-sample"


def have(*names: str) -> bool:
    return all((DATA_DIR / name).is_dir() for name in names)


def why_missing(*names: str) -> str:
    return (f"needs the real dataset(s) {', '.join(names)}, not found under {DATA_DIR} "
            "(set BENCHMARK_DATA_DIR to the folder holding them)")


def needs_real(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not have(*names), reason=why_missing(*names))


def mri_7023() -> tuple[str, Path]:
    """The 7023 set's name and folder when it is here, else its shipped sample's."""
    return (MRI_7023, DATA_DIR / MRI_7023) if have(MRI_7023) else (SAMPLE, SAMPLE_DIR)
