"""Accuracy per image source and per original size, and the metadata-only baseline beside the
models: the report's view of the shortcut audit (data/shortcuts.py, data/provenance.py).

Each cell's predictions carry the `source` and `size` of every test image (run/shortcut_log.py);
a slice's accuracy is the mean over its images and seeds with the same two-level bootstrap
interval (images and seeds) as the main table. A slice that holds one value for the whole
configuration (every image 224x224) says nothing and is left out.
"""
from __future__ import annotations

import pandas as pd

from mribench import stats
from mribench.run import layout
from mribench.stats.compare import correctness, seed_matrix

COLUMNS = ("source", "size")
MIN_SLICE = 10  # images: rarer values are pooled into one "other" slice
BASELINE = {subset: f"metadata_baseline_{prefix}_accuracy" for subset, prefix in layout.PREFIXES.items()}


def slice_rows(results, subset: str) -> list[dict]:
    """One row per configuration, slice column and value: images, accuracy and its interval."""
    rows = []
    for dataset, name, runs in results.configs():
        frames = [(run["seed"], results.load(run["run_id"])) for _, run in runs.iterrows()]
        if not frames or any(f is None for _, f in frames):
            continue
        for column in COLUMNS:
            if not all(column in f for _, f in frames):
                continue
            frames_now = _pooled(frames, column)
            values = sorted(set().union(*(set(f[column]) for _, f in frames_now)))
            if len(values) < 2:
                continue
            for value in values:
                row = _slice(frames_now, column, value, subset)
                if row:
                    rows.append({"dataset": dataset, "config": name, "slice": column,
                                 "value": value, **row})
    return rows


def _pooled(frames, column: str) -> list:
    """The frames with `column` as text, values held by fewer than MIN_SLICE images (counted over
    the frames of one seed: the folds of k-fold cells test different images) pooled into one
    `other (N values)` slice: a slice of one or two images says nothing, and the binary set has
    over a hundred original sizes."""
    first = frames[0][0]
    counts = pd.concat([f[column].astype(str) for seed, f in frames if seed == first]).value_counts()
    rare = set(counts[counts < MIN_SLICE].index)
    if len(rare) < 2:  # one rare value keeps its name: pooling it would only hide it
        rare = set()
    label = f"other ({len(rare)} values)"
    return [(seed, f.assign(**{column: f[column].astype(str).map(
        lambda v: label if v in rare else v)})) for seed, f in frames]


def _slice(frames, column: str, value: str, subset: str) -> dict | None:
    parts = []
    for seed, frame in frames:
        part = correctness(frame[frame[column].astype(str) == value], subset)
        if part is not None and len(part):
            parts.append((seed, part.assign(value=part["correct"])))
    if not parts:
        return None
    boot = stats.two_level_bootstrap(seed_matrix(parts).to_numpy())
    return {"images": boot["images"], "seeds": len({s for s, _ in parts}),
            "accuracy": boot["mean"], "accuracy_ci95": [boot["ci95_low"], boot["ci95_high"]]}


def display_slices(rows: list[dict]) -> list[dict]:
    return [{"config": r["config"], "slice": r["slice"], "value": r["value"], "images": r["images"],
             "acc [95% CI]": f"{r['accuracy']:.3f} [{r['accuracy_ci95'][0]:.3f}, "
                             f"{r['accuracy_ci95'][1]:.3f}]"} for r in rows]


def add_baseline(rows: list[dict], results) -> None:
    """The metadata-only baseline each configuration's cells logged (mean over its runs)."""
    by_name = {name: runs for _, name, runs in results.configs()}
    for row in rows:
        runs = by_name.get(row["config"])
        for metric in (*BASELINE.values(), "metadata_baseline_test_chance"):
            col = metric
            if runs is not None and col in runs:
                values = pd.to_numeric(runs[col], errors="coerce").dropna()
                if len(values):
                    row[metric] = float(values.mean())


def with_baseline(shown: list[dict], rows: list[dict]) -> list[dict]:
    """The displayed configuration table with the metadata-only baseline after the accuracies."""
    out = []
    for display, row in zip(shown, rows):
        extra = {f"metadata baseline ({subset})": f"{row[metric]:.3f}"
                 for subset, metric in BASELINE.items() if row.get(metric) is not None}
        if not extra:
            out.append(display)
            continue
        keys = list(display)
        at = max((i + 1 for i, k in enumerate(keys) if "acc [95% CI]" in k), default=len(keys))
        out.append({**{k: display[k] for k in keys[:at]}, **extra,
                    **{k: display[k] for k in keys[at:]}})
    return out


SLICE_NOTE = ["Accuracy on the test images of each source (data/provenance.py: sartaj, figshare, "
              "br35h on the 7023 set; file-name families elsewhere) and each original image size, "
              "mean [95% interval over images and seeds]. The metadata baseline in the main table "
              "is a random forest on file and intensity properties alone, trained on each cell's "
              "training side: a model that barely beats it may be reading the source, not the "
              "anatomy (docs/data-and-weights.md#shortcut-audit)."]
