"""Curves of a suite with `axes:`: for each numeric axis, the clean-test accuracy of every
configuration against the axis value, with the same two-level 95% interval (test images and
seeds together, tables.py) the configuration table gives, and where two curves separate.

A *line* is what stays fixed along the axis: dataset, model, strategy and the values of the
other axes. `train_per_class: all` is placed at the training images per class it used (the
logged n_train over the number of classes, mean over the runs), so a learning curve ends where
the data runs out (at 1 when the other sizes are fractions of each class). Two lines
*separate* at a value where their 95% intervals do not overlap; non-overlap of two 95%
intervals is a stricter criterion than a 5% test of the difference (it corresponds to about
p < 0.006 for two normal intervals of equal width; tests/report/test_curves.py simulates it),
so a "never" here can still be a difference the pairwise tests find.
"""
from __future__ import annotations

import json
import math
from itertools import combinations

import pandas as pd

DATA_SIZE = "train_per_class"  # drawn on a log x-axis


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _per_class(runs: pd.DataFrame) -> float | None:
    """Training images per class the runs used: n_train / classes, mean over the runs."""
    n_train = pd.to_numeric(runs.get("n_train"), errors="coerce")
    classes = runs.get("classes")
    if n_train is None or classes is None or n_train.isna().all():
        return None
    try:
        k = len(json.loads(classes.dropna().iloc[0]))
    except (IndexError, TypeError, ValueError):
        return None
    return float(n_train.mean()) / k if k else None


def axis_names(runs: pd.DataFrame) -> list[str]:
    return [c.removeprefix("axis.") for c in runs.columns if c.startswith("axis.")]


def _fields(*models) -> set[str]:
    return {name for model in models for name in model.model_fields}


def images_note(axis: str) -> str | None:
    """Whether every value of an axis (its label: `train_per_class`, `datasets.0.near_bits`) is
    scored on the same test images, in words; None where the label does not tell. An axis on
    the split, the dataset's subset or its duplicate detection (split.*, subset_per_class, dedup,
    near_bits, ...) changes which images are tested; train_per_class draws from the training
    side only; preprocessing keeps the files and changes their pixels."""
    from mribench.config.robustness import RobustnessConfig
    from mribench.config.schema import (
        AugmentConfig,
        DatasetConfig,
        ExplainConfig,
        HeadConfig,
        ModelConfig,
        PreprocessConfig,
        SplitConfig,
        StrategyConfig,
        TrainingConfig,
    )

    name = axis.rsplit(".", 1)[-1]
    changes = _fields(SplitConfig, DatasetConfig) - {"train_per_class", "robustness", "external"}
    pixels = _fields(PreprocessConfig)
    keeps = _fields(TrainingConfig, AugmentConfig, ModelConfig, HeadConfig, StrategyConfig,
                    ExplainConfig, RobustnessConfig) | {"train_per_class"}
    if name in changes & (keeps | pixels):
        return None  # `name`: a dataset's or a model's; the label alone does not say which
    if name in changes:
        return ("The values of this axis are not necessarily scored on the same test images "
                "(it can change the split, the subset or which duplicates leave the clean test): "
                "a difference along it may partly be a difference of test images.")
    if name in pixels and name not in keeps:
        return ("For each seed every value of the axis is scored on the same test files; this "
                "axis changes their pixels (the preprocessing), not which images are tested.")
    if name in keeps:
        return "For each seed every value of the axis is scored on the same test images."
    return None


def curve_points(runs: pd.DataFrame, rows: list[dict]) -> list[dict]:
    """One point per configuration and numeric axis: axis, line, value (as in the suite), x,
    accuracy (clean test where there is one), its interval, and what the interval covers."""
    names = axis_names(runs)
    if not names:
        return []
    first = runs.groupby("config_key").first()
    by_key = {key: group for key, group in runs.groupby("config_key")}
    one_model = len({r["model"] for r in rows}) == 1
    several = len({r["dataset"] for r in rows}) > 1
    points = []
    for name in names:
        column = f"axis.{name}"
        values = {k: first.at[k, column] for k in first.index
                  if isinstance(first.at[k, column], str)}
        numeric = {k: _number(v) for k, v in values.items()}
        if not any(v is not None for v in numeric.values()):
            continue  # a categorical axis (e.g. an optimizer): the table labels it instead
        for row in rows:
            key = row["config_key"]
            if key not in values:
                continue
            x = numeric[key]
            if x is None and name == DATA_SIZE and values[key] == "all":
                # sizes given as fractions of each class: all is the fraction 1
                fractions = all(v is None or 0 < v < 1 for v in numeric.values())
                x = 1.0 if fractions else _per_class(by_key[key])
            elif x is not None and name == DATA_SIZE and x >= 1:
                # a count above what a class has takes the whole class: placed at the images
                # per class it used, so it does not sit past `all` out of order
                used = _per_class(by_key[key])
                x = min(x, used) if used is not None else x
            if x is None:
                continue
            others = [f"{o}={first.at[key, f'axis.{o}']}" for o in names if o != name
                      and isinstance(first.at[key, f"axis.{o}"], str)]
            line = (f"{row['dataset']}: " if several else "") + (
                row["strategy"] if one_model else f"{row['model']}/{row['strategy']}") + (
                f" [{', '.join(others)}]" if others else "")
            subset = "test_clean" if "test_clean_accuracy" in row else "test"
            interval = row.get(f"{subset}_accuracy_ci95")
            covers = "test images and seeds"
            if interval is None:
                interval, covers = row.get(f"{subset}_accuracy_seed_ci95"), "seeds only"
            elif row.get("seeds") == 1:
                covers = "test images only (1 seed)"
            low, high = interval or (math.nan, math.nan)
            points.append({"dataset": row["dataset"], "axis": name, "line": line,
                           "value": values[key], "x": x, "runs": row["n"],
                           "seeds": row.get("seeds"), "subset": subset,
                           "accuracy": row.get(f"{subset}_accuracy"), "ci95_low": low,
                           "ci95_high": high, "covers": covers,
                           "images": row.get(f"{subset}_images")})
    return sorted(points, key=lambda p: (p["axis"], p["line"], p["x"]))


def separations(points: list[dict]) -> list[dict]:
    """For every two lines of one axis (same dataset), the axis values where their intervals do
    not overlap: the first such value and whether they stay apart at every larger one."""
    out = []
    for (dataset, name), group in _grouped(points).items():
        lines = sorted({p["line"] for p in group})
        for a, b in combinations(lines, 2):
            pa = {p["x"]: p for p in group if p["line"] == a}
            pb = {p["x"]: p for p in group if p["line"] == b}
            shared = sorted(set(pa) & set(pb))
            if not shared:
                continue
            apart = [x for x in shared if _apart(pa[x], pb[x])]
            after = shared[shared.index(apart[0]):] if apart else []
            # which line is above where they are apart: curves that cross (kNN above fine-tuning
            # on few images, below on many) are apart on both sides, not "apart from then on"
            above = {x: a if pa[x]["accuracy"] > pb[x]["accuracy"] else b for x in apart}
            row = {"dataset": dataset, "axis": name, "a": a, "b": b,
                   "compared_at": ", ".join(pa[x]["value"] for x in shared),
                   "separates_at": pa[apart[0]]["value"] if apart else None,
                   "apart_at": ", ".join(pa[x]["value"] for x in apart),
                   # apart, on the same side, from the first separation up to the largest value
                   # both ran at
                   "stays_apart": bool(apart) and apart == after
                   and len(set(above.values())) == 1,
                   "largest_compared": pa[shared[-1]]["value"]}
            if apart:
                row["higher"] = above[apart[0]]
                crossed = [pa[x]["value"] for x in apart if above[x] != row["higher"]]
                if crossed:
                    row["crosses_at"] = ", ".join(crossed)
            row["statement"] = _statement(row)
            out.append(row)
    return out


def _grouped(points: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for p in points:
        out.setdefault((p["dataset"], p["axis"]), []).append(p)
    return out


def _apart(p: dict, q: dict) -> bool:
    if any(math.isnan(v) for v in (p["ci95_low"], p["ci95_high"], q["ci95_low"], q["ci95_high"])):
        return False
    return p["ci95_low"] > q["ci95_high"] or q["ci95_low"] > p["ci95_high"]


def _statement(row: dict) -> str:
    if row["separates_at"] is None:
        return (f"{row['a']} and {row['b']}: intervals overlap at every {row['axis']} compared "
                f"({row['compared_at']})")
    lower = row["b"] if row["higher"] == row["a"] else row["a"]
    if row.get("crosses_at"):
        return (f"{row['higher']} above {lower}: intervals first apart at {row['axis']} "
                f"{row['separates_at']}; the curves cross: {lower} above {row['higher']}, "
                f"intervals apart, at {row['crosses_at']}")
    if row["separates_at"] == row["largest_compared"]:
        tail = " (the largest value both ran at)"
    elif row["stays_apart"]:
        tail = f" and stay apart up to {row['largest_compared']}, the largest both ran at"
    else:
        tail = f" (apart at {row['apart_at']} only)"
    return (f"{row['higher']} above {lower}: intervals first apart at {row['axis']} "
            f"{row['separates_at']}{tail}")


def display_points(points: list[dict]) -> list[dict]:
    """The curve table as people read it: accuracy [95% interval], 3 decimals."""
    shown = []
    for p in points:
        interval = ("" if math.isnan(p["ci95_low"])
                    else f" [{p['ci95_low']:.3f}, {p['ci95_high']:.3f}]")
        # `all` of a count axis, or a count some class did not have: say the count it stands at
        nominal = _number(p["value"])
        x = (f" ({p['x']:.0f} per class)" if p["value"] == "all" and p["x"] > 1
             else f" ({p['x']:.0f} per class used)"
             if p["axis"] == DATA_SIZE and nominal is not None and nominal >= 1
             and round(p["x"]) < nominal else "")
        shown.append({"axis": p["axis"], "line": p["line"], "value": p["value"] + x,
                      "runs": p["runs"],
                      f"{'clean' if p['subset'] == 'test_clean' else 'full'} acc [95% CI]":
                      f"{p['accuracy']:.3f}{interval}", "covers": p["covers"]})
    return shown
