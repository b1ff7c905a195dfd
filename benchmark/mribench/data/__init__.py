"""Datasets: the three public brain MRI sets and user sets, splits, validation, cache, audit, fetch.

Nothing is imported eagerly (PEP 562): `mribench.data.registry` and the command wiring stay
light, and `prepare` (scikit-learn, PIL) or `make_loader` (torch) load on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {"DataError": "samples", "Sample": "samples", "PreparedData": "preparation",
         "prepare": "preparation", "load_image": "images", "make_loader": "loader"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"mribench.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'mribench.data' has no attribute {name!r}")
