"""Paired comparisons between a suite's configurations, from their saved predictions.

Two configurations are compared on the test images both scored in the seeds and folds they
share, on the clean test subset (images with no exact or near copy in train/val) and on the
full test set. Which test fits depends on the split (see paired.py):
- one fixed test set (official split, or a single hold-out): with two or more seeds, the
  configuration-level test of configurations.py (variance components over images and seeds:
  it counts which test images were drawn and how training runs vary); with one seed, the exact
  sign-flip over images, labelled as a statement about those trained models only;
- k-fold or repeated hold-out: the Nadeau-Bengio corrected resampled t-test (folds averaged
  within each seed first when several seeds ran the same folds), and its interval.
Holm's step-down correction adjusts the p-values over all pairs, within each subset.
"""
from __future__ import annotations

from itertools import combinations
from typing import Callable

import numpy as np
import pandas as pd

from mribench.run import layout
from mribench.stats import configurations, intervals, paired

SUBSETS = layout.SUBSETS
Loader = Callable[[str], "pd.DataFrame | None"]


def correctness(frame: pd.DataFrame | None, subset: str) -> pd.DataFrame | None:
    """file, true label and correctness (0/1) of one run's predictions on a subset; None when
    the run has no predictions, or no clean flags (dedup none, or runs of older versions)."""
    if frame is None or (subset == layout.CLEAN and not layout.has_clean_flags(frame)):
        return None
    frame = layout.in_subset(frame, subset)
    # duplicate group (copies of one test image share it); predictions of older versions have
    # none: each image is then its own group
    group = frame["group"].astype(str) if "group" in frame else frame["file"].astype(str)
    return pd.DataFrame({"file": frame["file"].astype(str), "true": frame["true"].astype(str),
                         "correct": (frame["true"] == frame["pred"]).astype(float),
                         "group": group.to_numpy()})


def seed_matrix(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """[seeds, files] of a value column, from (seed, frame with file and value) parts (a seed's
    folds together); NaN where a seed did not score a file (hold-out: each seed its own test)."""
    long = pd.concat([f.assign(seed=s) for s, f in parts], ignore_index=True)
    return long.pivot_table(index="seed", columns="file", values="value", aggfunc="mean")


def group_vector(parts: list[tuple[str, pd.DataFrame]], files) -> np.ndarray:
    """The duplicate group of each of `files`, from (seed, frame with file and group) parts."""
    both = pd.concat([f[["file", "group"]] for _, f in parts]).drop_duplicates("file")
    return both.set_index("file")["group"].loc[list(files)].to_numpy()


def label_of(runs: pd.DataFrame) -> Callable[[pd.Series], str]:
    one_model = runs["model"].nunique() == 1

    def label(run: pd.Series) -> str:  # the shortest name that still tells configurations apart
        name = run["strategy"] if one_model else f"{run['model']}/{run['strategy']}"
        axes = run.get("axes")  # a suite's axes: `train_per_class=10, image_size=128`
        return f"{name} [{axes}]" if isinstance(axes, str) and axes else name
    return label


def _shared(runs_a: pd.DataFrame, runs_b: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(seed, fold, run_a, run_b) for every repeat both configurations ran."""
    by_repeat = runs_b.set_index(["seed", "fold"])["run_id"].to_dict()
    return [(r["seed"], r["fold"], r["run_id"], by_repeat[(r["seed"], r["fold"])])
            for _, r in runs_a.sort_values(["seed", "fold"]).iterrows()
            if (r["seed"], r["fold"]) in by_repeat]


def _paired_frames(repeats, load: Loader, subset: str) -> list[dict] | None:
    out = []
    for seed, fold, run_a, run_b in repeats:
        a, b = correctness(load(run_a), subset), correctness(load(run_b), subset)
        if a is None or b is None:
            return None
        merged = a.merge(b, on="file", suffixes=("_a", "_b"), how="outer", indicator=True)
        unpaired = merged[merged["_merge"] != "both"]
        if len(unpaired):
            raise ValueError(f"seed {seed} fold {fold}: the two runs scored different images "
                             f"({len(unpaired)} unpaired, e.g. {unpaired['file'].iloc[0]}): "
                             "compare runs on the same split only")
        if (merged["true_a"] != merged["true_b"]).any():
            raise ValueError("predictions tables disagree on true labels for the same files")
        if len(merged):
            out.append({"seed": seed, "fold": fold, "frame": merged})
    return out


def compare_pair(runs_a: pd.DataFrame, runs_b: pd.DataFrame, load: Loader, subset: str,
                 protocol: str, train_size: float) -> dict | None:
    """One pair's test on one subset; None when a side lacks predictions for the subset."""
    repeats = _shared(runs_a, runs_b)
    frames = _paired_frames(repeats, load, subset) if repeats else None
    if not frames:
        return None
    acc_a = [f["frame"]["correct_a"].mean() for f in frames]
    acc_b = [f["frame"]["correct_b"].mean() for f in frames]
    row = {"repeats": len(frames), "accuracy_a": float(np.mean(acc_a)),
           "accuracy_b": float(np.mean(acc_b))}
    if protocol != "official" and len(frames) >= 2:
        return {**row, **_resampled(frames, acc_a, acc_b, protocol, train_size)}
    a, b, groups = _tables(frames)
    r = configurations.compare_configurations(a, b, groups=groups)
    return {**row, "test": r["method"], "covers": r["covers"], "images": r["images"],
            "groups": r["groups"],
            "seeds": r["seeds"][0], "discordant": int((a.mean(0) != b.mean(0)).sum()),
            "difference": r["difference"], "ci95": list(r["ci95"]), "p_value": r["p_value"],
            "se": r["se"], "df": r["df"], "detectable": r["detectable"]}


def _tables(frames: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[seeds, images] correctness of a and of b on the images every shared seed scored, and
    each image's duplicate group (the same groups are resampled for a and b)."""
    def table(column: str) -> pd.DataFrame:
        return seed_matrix([(f["seed"], f["frame"].assign(value=f["frame"][column]))
                            for f in frames])
    a, b = table("correct_a"), table("correct_b")
    scored = a.columns[a.notna().all() & b.notna().all()]
    group_of = pd.concat([f["frame"][["file", "group_a"]] for f in frames]) \
        .drop_duplicates("file").set_index("file")["group_a"]
    return a[scored].to_numpy(), b[scored].to_numpy(), group_of.loc[scored].to_numpy()


def _resampled(frames, acc_a, acc_b, protocol: str, train_size: float) -> dict:
    """k-fold and repeated hold-out: the corrected resampled t-test. With several seeds of the
    same k folds, the folds are averaged within each seed first, so what a seed shares across
    its folds (initialisation, batch order) counts as training noise instead of hiding in the
    fold-to-fold spread (simulated: 0.147 false positives over S x k folds with a shared seed
    shift, 0.069 by seed)."""
    test_size = float(np.mean([len(f["frame"]) for f in frames]))
    by_seed: dict[str, list[float]] = {}
    for f, x, y in zip(frames, acc_a, acc_b):
        by_seed.setdefault(f["seed"], []).append(x - y)
    folds = {len(v) for v in by_seed.values()}
    if protocol == "kfold" and len(by_seed) >= 2 and len(folds) == 1 and min(folds) >= 2:
        nb = paired.nadeau_bengio_by_seed(list(by_seed.values()), train_size, test_size)
        test = "corrected resampled t, folds averaged within each seed"
        covers = "test images and training (seeds, folds and the data set drawn)"
    else:
        nb = paired.nadeau_bengio([a - b for a, b in zip(acc_a, acc_b)], train_size, test_size)
        test = "corrected resampled t (Nadeau-Bengio)"
        covers = ("test images and training (the folds of 1 seed; not a seed effect its folds "
                  "share)" if protocol == "kfold" else
                  "test images and training (one hold-out per seed)")
    return {"test": test, "covers": covers, "images": int(round(test_size)),
            "seeds": len(by_seed), "difference": nb["mean_difference"],
            "ci95": [nb["ci95_low"], nb["ci95_high"]], "p_value": nb["p_value"],
            "df": nb.get("df")}


def paired_rows(runs: pd.DataFrame, load: Loader) -> list[dict]:
    """Every pair of configurations of each dataset, on each subset, Holm-adjusted per subset."""
    runs = runs[runs["status"] == "FINISHED"]
    rows = []
    for dataset, on_dataset in runs.groupby("dataset"):
        configs = {key: group for key, group in on_dataset.groupby("config_key")}
        label = label_of(on_dataset)
        protocol = str(on_dataset.get("split.protocol", pd.Series(["official"])).iloc[0])
        train_size = _train_size(on_dataset)
        for key_a, key_b in combinations(sorted(configs, key=lambda k: label(configs[k].iloc[0])), 2):
            base = {"dataset": dataset, "a": label(configs[key_a].iloc[0]),
                    "b": label(configs[key_b].iloc[0])}
            for subset in SUBSETS:
                try:
                    result = compare_pair(configs[key_a], configs[key_b], load, subset, protocol,
                                          train_size)
                except ValueError as err:  # e.g. different test images: this pair cannot pair
                    rows.append({**base, "subset": subset, "error": str(err)})
                    continue
                if result is not None:
                    rows.append({**base, "subset": subset, **result})
    for subset in SUBSETS:
        tested = [r for r in rows if r["subset"] == subset and "p_value" in r]
        for row, adjusted in zip(tested, intervals.holm([r["p_value"] for r in tested])):
            row["p_holm"] = adjusted
    return rows


def _train_size(runs: pd.DataFrame) -> float:
    """Images each repeat's model learnt from (train + validation), for the NB correction."""
    sizes = [pd.to_numeric(runs.get(f"n_{s}"), errors="coerce") for s in ("train", "val")]
    if any(s is None for s in sizes):
        return float("nan")
    return float((sizes[0] + sizes[1]).mean())
