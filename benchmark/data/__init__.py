"""Datasets: the three public brain MRI sets and user sets, splits, validation, cache, audit, fetch."""
from benchmark.data.images import load_image
from benchmark.data.loader import make_loader
from benchmark.data.prepare import PreparedData, prepare
from benchmark.data.samples import DataError, Sample

__all__ = ["DataError", "PreparedData", "Sample", "load_image", "make_loader", "prepare"]
