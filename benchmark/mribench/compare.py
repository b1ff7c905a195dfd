"""Paired significance tests between a suite's configurations, from their predictions.

Two configurations are compared on the images both saw in the same seed and fold (same split):
per-image correctness is pooled over those repeats and tested with the exact McNemar test.
Holm's step-down correction adjusts the p-values for the number of pairs compared.
"""
from __future__ import annotations

from itertools import combinations
from typing import Callable

import pandas as pd

from mribench import stats


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _pooled(runs_a: pd.DataFrame, runs_b: pd.DataFrame,
            predictions: Callable[[str], pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Both sides' predictions over the repeats they share, files keyed by repeat."""
    a_parts, b_parts = [], []
    by_repeat = runs_b.set_index(["tags.seed", "tags.fold"])["run_id"].to_dict()
    for _, run in runs_a.iterrows():
        other = by_repeat.get((run["tags.seed"], run["tags.fold"]))
        if other is None:
            continue
        tag = f"{run['tags.seed']}/{run['tags.fold']}/"
        for parts, run_id in ((a_parts, run["run_id"]), (b_parts, other)):
            frame = predictions(run_id)[["file", "true", "pred"]].copy()
            frame["file"] = tag + frame["file"].astype(str)
            parts.append(frame)
    if not a_parts:
        return pd.DataFrame(), pd.DataFrame(), 0
    return pd.concat(a_parts), pd.concat(b_parts), len(a_parts)


def paired_rows(runs: pd.DataFrame, predictions: Callable[[str], pd.DataFrame]) -> list[dict]:
    runs = runs[runs["status"] == "FINISHED"]
    rows = []
    for dataset, on_dataset in runs.groupby("tags.dataset"):
        configs = {key: group for key, group in on_dataset.groupby("tags.config_key")}
        one_model = on_dataset["tags.model"].nunique() == 1

        def label(run) -> str:  # the shortest name that still tells configurations apart
            return run["tags.strategy"] if one_model else f"{run['tags.model']}/{run['tags.strategy']}"

        for key_a, key_b in combinations(sorted(configs), 2):
            a, b, repeats = _pooled(configs[key_a], configs[key_b], predictions)
            if not repeats:
                continue
            row = {"dataset": dataset, "a": label(configs[key_a].iloc[0]),
                   "b": label(configs[key_b].iloc[0]), "repeats": repeats}
            try:
                test = stats.mcnemar_frames(a, b)
            except ValueError as err:  # e.g. different test images: this pair cannot be paired
                rows.append({**row, "error": str(err)})
                continue
            rows.append({**row, "images": test["n"],
                         "accuracy_a": round(test["accuracy_a"], 4),
                         "accuracy_b": round(test["accuracy_b"], 4),
                         "a_only": test["a_only"], "b_only": test["b_only"],
                         "p_value": test["p_value"]})
    tested = [r for r in rows if "p_value" in r]
    for row, adjusted in zip(tested, holm([r["p_value"] for r in tested])):
        row["p_holm"] = adjusted
    return rows
