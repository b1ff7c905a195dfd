"""Datasets: the three public brain MRI sets and user sets, splits, validation, cache, audit, fetch.

`make_loader` (torch) loads on first use (PEP 562), so the command wiring and the data checks
stay light; the rest is plain numpy/PIL.
"""
from __future__ import annotations

from mribench.data.images import load_image
from mribench.data.prepare import PreparedData, prepare
from mribench.data.samples import DataError, Sample

__all__ = ["DataError", "PreparedData", "Sample", "load_image", "make_loader", "prepare"]


def __getattr__(name: str):
    if name == "make_loader":
        from mribench.data.loader import make_loader

        return make_loader
    raise AttributeError(f"module 'mribench.data' has no attribute {name!r}")
