"""What a cell run holds and where: its artifact paths, the names of its test subsets, the clean
mask and the reader of its predictions files. The writers (run/, robustness/evaluate.py) and
the readers (report/, stats/compare.py, tracking/queries.py) all take them from here.

A cell scores two subsets of its test split: the full split and its clean part (the images
with no exact, near or robust copy in train/val). Their metrics are logged with the prefixes
`test_` and `test_clean_`; reports call the subsets `full` and `clean`; artifacts of the clean
subset carry a `_clean` suffix; predictions files flag each image's `clean` column.

Imports nothing of the package, so every layer can use it without an import circle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# the test subsets: the report's name -> the metric prefix as logged
CLEAN, FULL = "clean", "full"
TEST, TEST_CLEAN = "test", "test_clean"
PREFIXES = {CLEAN: TEST_CLEAN, FULL: TEST}
SUBSETS = tuple(PREFIXES)  # clean first: what a report leads with
CLEAN_FLAG = "clean"  # the predictions column: the image belongs to the clean subset

# a cell run's artifacts
RESOLVED_CONFIG = "config/resolved.yaml"
AUDIT_SUMMARY = "data/audit_summary.json"
COMPOSITION = "data/composition.json"
SHORTCUT_AUDIT = "data/shortcut_audit.json"
SKIPPED_FILES = "data/skipped_files.csv"
PREDICTIONS = "metrics/predictions.csv"  # one row per test image (stats.metrics.predictions_frame)
ROBUST_PREDICTIONS = "robustness/predictions.csv"  # artefact, severity, then PREDICTIONS' columns
EXPLANATIONS = "explanations"
EXPLANATION_MAPS = f"{EXPLANATIONS}/maps.npz"
# a suite (parent) run's artifacts
CELLS_SUMMARY = "summary/cells.csv"
REPORT = "report"  # the folder `mribench report` logs its output under


def split_file(context: str) -> str:
    """The exact split a run used (`split`), or another sample list it logged."""
    return f"data/{context}.csv"


def suffix(prefix: str) -> str:
    """The artifact suffix of a test subset's metric prefix: '' (test), '_clean' (test_clean)."""
    return prefix.removeprefix(TEST)


def metrics_file(stem: str, prefix: str, ext: str, tail: str = "") -> str:
    """A subset's table under metrics/: `metrics_file("confusion_matrix", "test_clean", "csv")`
    is metrics/confusion_matrix_clean.csv."""
    return f"metrics/{stem}{suffix(prefix)}{tail}.{ext}"


def plot_file(stem: str, prefix: str = TEST, tail: str = "") -> str:
    """A subset's figure under plots/ (`prefix` test: no suffix)."""
    return f"plots/{stem}{suffix(prefix)}{tail}.png"


def learning_curves_file(stage: str = "") -> str:
    """The learning curves of a fit, or of one stage of a two-stage fit (`probe_`)."""
    return plot_file("learning_curves", tail=f"_{stage.strip('_')}" if stage else "")


def explanation_figure(method: str) -> str:
    return f"{EXPLANATIONS}/{method}.png"


def external_file(key: str, name: str) -> str:
    """An external test set's artifact (`audit.json`, `predictions.csv`, ...)."""
    return f"external/{key}/{name}"


def clean_mask(samples, clean_samples) -> np.ndarray | None:
    """Which of the test `samples` belong to the clean subset (`clean_samples`, the split's
    clean test; None when the dataset was not deduplicated: then None)."""
    if clean_samples is None:
        return None
    kept = {s.path for s in clean_samples}
    return np.array([s.path in kept for s in samples], dtype=bool)


def scored_subsets(samples, clean_samples) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The subsets a cell scores, metric prefix -> mask over `samples`, and the clean mask
    (None without deduplication). The clean subset is left out when it is empty: every test
    image leaked (the audit says so)."""
    subsets = {TEST: np.ones(len(samples), dtype=bool)}
    clean = clean_mask(samples, clean_samples)
    if clean is not None and clean.any():
        subsets[TEST_CLEAN] = clean
    return subsets, clean


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file (PREDICTIONS, ROBUST_PREDICTIONS) as a frame."""
    return pd.read_csv(path)


def has_clean_flags(frame: pd.DataFrame) -> bool:
    """Whether a predictions frame says which images are clean (not without deduplication,
    nor in runs older than the flag)."""
    return CLEAN_FLAG in frame


def in_subset(frame: pd.DataFrame, subset: str) -> pd.DataFrame:
    """The rows of a predictions frame in a subset (`clean` or `full`); the clean flag is read
    back from CSV as a bool or as its text."""
    if subset == CLEAN:
        return frame[frame[CLEAN_FLAG].astype(str).str.lower() == "true"]
    return frame


def leading_subset(rows: list[dict]) -> str:
    """The subset a report leads with: clean when any configuration row has a clean accuracy,
    else full."""
    return CLEAN if any(f"{TEST_CLEAN}_accuracy" in r for r in rows) else FULL
