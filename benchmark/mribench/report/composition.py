"""What each scored test subset of a configuration holds, beside its scores: images per class,
duplicate groups, the majority-class and stratified-chance baselines, balanced accuracy and
per-class recall (n/a for a class the subset has no image of), and the warning lines.

Counts come from the runs' logged `{subset}_support_{class}` metrics (means over the runs:
the same for every seed of an official split), recalls from `{subset}_recall_{class}`; a class
with no image has no recall, also in runs logged before undefined values were left out (which
logged 0 for it).
"""
from __future__ import annotations

import math

import pandas as pd

from mribench.run import layout
from mribench.stats import composition
from mribench.stats.metrics import safe_name

NAMES = {prefix: name for name, prefix in layout.PREFIXES.items()}  # test_clean -> clean


def _per_seed_total(runs: pd.DataFrame, name: str) -> float | None:
    """A count over the test images of one seed's runs: summed over the folds of k-fold cells
    (each fold tests other images), averaged over seeds (each seed tests the same ones)."""
    col = name
    if col not in runs:
        return None
    values = pd.to_numeric(runs[col], errors="coerce")
    seeds = runs["seed"] if "seed" in runs else pd.Series(0, index=runs.index)
    totals = values.groupby(seeds).sum(min_count=1).dropna()
    return float(totals.mean()) if len(totals) else None


def _mean(runs: pd.DataFrame, name: str) -> float | None:
    col = name
    if col not in runs:
        return None
    values = pd.to_numeric(runs[col], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def subset_summary(runs: pd.DataFrame, prefix: str, classes: list[str]) -> dict:
    """{prefix}_classes (images per class), _majority_baseline, _chance_baseline,
    _recall_{class} (None where the subset has no image of it), _macro_classes, _groups."""
    counts = {c: _per_seed_total(runs, f"{prefix}_support_{safe_name(c)}") for c in classes}
    if not classes or any(v is None for v in counts.values()):
        return {}
    per_class = {c: int(round(v)) for c, v in counts.items()}
    if sum(per_class.values()) == 0:
        return {}
    out = {f"{prefix}_classes": per_class,
           **{f"{prefix}_{k}": v for k, v in composition.baselines(per_class).items()}}
    for c in classes:
        out[f"{prefix}_recall_{safe_name(c)}"] = (
            None if per_class[c] == 0 else _mean(runs, f"{prefix}_recall_{safe_name(c)}"))
    out[f"{prefix}_macro_classes"] = sum(n > 0 for n in per_class.values())
    groups = _per_seed_total(runs, f"{prefix}_groups")
    if groups is not None:
        out[f"{prefix}_groups"] = int(round(groups))
    return out


def display_columns(row: dict, prefix: str) -> dict:
    """The main table's columns for one subset, beside its accuracy: images in groups,
    baselines, balanced accuracy and recall per class."""
    name, out = NAMES[prefix], {}
    if f"{prefix}_classes" not in row:
        return out
    per_class = row[f"{prefix}_classes"]
    images = row.get(f"{prefix}_images") or sum(per_class.values())
    groups = row.get(f"{prefix}_groups")
    out[f"{name} images"] = f"{images} in {groups} groups" if groups else f"{images}"
    out[f"{name} majority / chance"] = (f"{row[f'{prefix}_majority_baseline']:.3f} / "
                                       f"{row[f'{prefix}_chance_baseline']:.3f}")
    if row.get(f"{prefix}_balanced_accuracy") is not None:
        out[f"{name} bal acc"] = f"{row[f'{prefix}_balanced_accuracy']:.3f}"
    out[f"{name} recall"] = ", ".join(
        f"{c} {_num(row.get(f'{prefix}_recall_{safe_name(c)}'))}" for c in per_class)
    return out


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def composition_rows(rows: list[dict]) -> list[dict]:
    """One row per dataset, subset and distinct class mix: images, groups, images per class and
    the baselines (configurations on the same split share one row)."""
    seen: dict[tuple, dict] = {}
    for row in rows:
        for prefix, name in NAMES.items():
            per_class = row.get(f"{prefix}_classes")
            if not per_class:
                continue
            key = (row["dataset"], name, tuple(per_class.items()), row.get(f"{prefix}_groups"))
            if key in seen:
                seen[key]["configurations"] += 1
                continue
            seen[key] = {"dataset": row["dataset"], "subset": name,
                         "images": sum(per_class.values()), "groups": row.get(f"{prefix}_groups"),
                         **{f"n {c}": n for c, n in per_class.items()},
                         "majority baseline": round(row[f"{prefix}_majority_baseline"], 4),
                         "chance baseline": round(row[f"{prefix}_chance_baseline"], 4),
                         "configurations": 1}
    return list(seen.values())


def warnings(rows: list[dict]) -> list[str]:
    """One line per dataset and subset that lacks a class or holds few images of one."""
    lines = []
    for row in composition_rows(rows):
        per_class = {k.removeprefix("n "): v for k, v in row.items() if k.startswith("n ")}
        line = composition.warning(f"{row['dataset']} {row['subset']} test", per_class)
        if line and line not in lines:
            lines.append(line)
    for row in rows:  # external sets: whole and clean part, from their support metrics
        sets: dict[str, dict[str, int]] = {}
        for key, value in row.items():
            if key.startswith("external_") and "_support_" in key and value is not None:
                part, cls = key.split("_support_", 1)
                sets.setdefault(part, {})[cls] = int(round(value))
        for part, per_class in sorted(sets.items()):
            name = part.removeprefix("external_").replace("clean_", "", 1)
            where = f"{row['dataset']} external {name}" + (
                " clean part" if part.startswith("external_clean_") else "")
            line = composition.warning(where, per_class)
            if line and line not in lines:
                lines.append(line)
    return lines
