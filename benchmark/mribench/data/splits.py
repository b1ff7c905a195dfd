"""Split protocols: official (+ validation carve-out), stratified hold-out, stratified k-fold.

Hand-written per-class selection rather than sklearn's splitters: the per-class counts are exact
(round(fraction * n), at least one and never all of a class with two or more files), and it works
on the tiny per-class subsets smoke runs use, where sklearn's stratified splitters refuse.
Every choice comes from numpy's seeded generator over inputs sorted by path, so a seed gives the
same split on any machine.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from mribench.config import SplitConfig
from mribench.data.samples import DataError


def _by_class(indices: list[int], labels: list[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i in indices:
        groups[labels[i]].append(i)
    return dict(sorted(groups.items()))


def _carve(indices: list[int], labels: list[int], fraction: float,
           rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(kept, taken): `fraction` of each class taken at random."""
    kept, taken = [], []
    for members in _by_class(indices, labels).values():
        n = len(members)
        k = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        order = rng.permutation(n)
        taken += [members[j] for j in order[:k]]
        kept += [members[j] for j in order[k:]]
    return sorted(kept), sorted(taken)


def split_indices(labels: list[int], official: list[str], cfg: SplitConfig, *, seed: int,
                  fold: int | None, name: str) -> dict[str, list[int]]:
    """Indices per split ("train", "val", "test") for files with these labels / official splits."""
    everything = list(range(len(labels)))
    if cfg.protocol == "official":
        if fold is not None:
            raise DataError(f"dataset {name!r}: fold={fold} given but protocol is 'official'")
        parts = {s: [i for i in everything if official[i] == s] for s in ("train", "val", "test")}
        if not parts["train"] or not parts["test"]:
            raise DataError(f"dataset {name!r} has no official train/test split "
                            f"(found {sorted(set(official))}); use protocol holdout or kfold")
        if not parts["val"]:
            parts["train"], parts["val"] = _carve(parts["train"], labels, cfg.val_fraction,
                                                  np.random.default_rng([seed, 1]))
        return parts
    if cfg.protocol == "holdout":
        if fold is not None:
            raise DataError(f"dataset {name!r}: fold={fold} given but protocol is 'holdout'")
        pool, test = _carve(everything, labels, cfg.test_fraction, np.random.default_rng([seed, 0]))
        train, val = _carve(pool, labels, cfg.val_fraction, np.random.default_rng([seed, 1]))
        return {"train": train, "val": val, "test": test}
    if fold is None or not 0 <= fold < cfg.folds:
        raise DataError(f"dataset {name!r}: kfold needs fold in 0..{cfg.folds - 1}, got {fold}")
    rng = np.random.default_rng([seed, 0])
    test, start = [], 0
    for members in _by_class(everything, labels).values():
        order = rng.permutation(len(members))
        # rotating the start keeps fold sizes within one file of each other across classes
        test += [members[j] for pos, j in enumerate(order) if (pos + start) % cfg.folds == fold]
        start += len(members)
    test_set = set(test)
    pool = [i for i in everything if i not in test_set]
    train, val = _carve(pool, labels, cfg.val_fraction, np.random.default_rng([seed, 1, fold]))
    return {"train": train, "val": val, "test": sorted(test)}
