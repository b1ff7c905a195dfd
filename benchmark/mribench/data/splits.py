"""Split protocols: official (+ validation carve-out), stratified hold-out, stratified k-fold,
all group-aware: the files of one duplicate group (exact or near copies, see data.audit) always
land on the same side, so a copy of a training image can never be a test image of the split
we drew. (The official train/test folders are the publisher's; their cross-folder copies are
counted by the audit and left out of the clean test subset.)

k-fold uses scikit-learn's StratifiedGroupKFold. The fractional carve-outs (hold-out test,
validation) are hand-written: scikit-learn's GroupShuffleSplit is not stratified and
StratifiedGroupKFold only gives 1/k fractions, while these keep the per-class counts exact
(round(fraction * n), at least one and never all of a class with two or more files) whenever
single files can fill them, which is what the tiny per-class subsets of smoke runs need.
Every choice comes from numpy's seeded generator over inputs sorted by path, so a seed gives
the same split on any machine.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mribench.config.schema import SplitConfig
from mribench.data.samples import DataError


def _units(indices: list[int], group_of: dict[int, int]) -> list[list[int]]:
    """indices bundled into their duplicate groups (singletons for files in no group)."""
    bundles: dict[int, list[int]] = {}
    for i in sorted(indices):
        bundles.setdefault(group_of.get(i, -1 - i), []).append(i)
    return list(bundles.values())


def _carve(indices: list[int], labels: list[int], fraction: float, rng: np.random.Generator,
           group_of: dict[int, int]) -> tuple[list[int], list[int]]:
    """(kept, taken): `fraction` of each class taken at random, whole groups at a time."""
    totals = Counter(labels[i] for i in indices)
    target = {c: min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
              for c, n in totals.items()}
    units = _units(indices, group_of)
    taken_count: Counter = Counter()
    kept, taken = [], []
    for u in rng.permutation(len(units)):
        need = Counter(labels[i] for i in units[u])
        # a group goes to the carved side only if it fits every class's remaining quota
        if all(taken_count[c] + k <= target[c] for c, k in need.items()):
            taken_count.update(need)
            taken += units[u]
        else:
            kept += units[u]
    return sorted(kept), sorted(taken)


def _kfold_test(everything: list[int], labels: list[int], folds: int, fold: int, seed: int,
                group_of: dict[int, int]) -> list[int]:
    groups = np.array([group_of.get(i, -1 - i) for i in everything])
    y = np.array([labels[i] for i in everything])
    n_groups = len(set(groups.tolist()))
    if n_groups < folds:
        raise DataError(f"kfold: {folds} folds need at least {folds} files that are not copies "
                        f"of each other, found {n_groups} groups")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    _, test = list(splitter.split(np.zeros(len(y)), y, groups))[fold]
    return sorted(everything[j] for j in test)


def _held_out(labels: list[int], cfg: SplitConfig, seed: int, name: str, held: list[bool],
              group_of: dict[int, int]) -> dict[str, list[int]]:
    """split.hold_out: the held images (and any copy of one, whatever its own source) are the
    test split; train and validation are carved from the rest, so no image of a held-out source
    or bin is ever trained or selected on."""
    members: dict[int, list[int]] = {}
    for i, g in group_of.items():
        members.setdefault(g, []).append(i)
    test = sorted({j for i, h in enumerate(held) if h
                   for j in (members[group_of[i]] if i in group_of else [i])})
    taken = set(test)
    pool = [i for i in range(len(labels)) if i not in taken]
    if not test:
        raise DataError(f"dataset {name!r}: split.hold_out {cfg.hold_out.model_dump(exclude_none=True)} "
                        "matches no image; `mribench data audit` lists the sources and sizes")
    missing = sorted({labels[i] for i in range(len(labels))} - {labels[i] for i in pool})
    if missing:
        raise DataError(f"dataset {name!r}: split.hold_out leaves class(es) {missing} (indices "
                        "into the sorted classes) with no training image: every image of them is "
                        "held out")
    train, val = _carve(pool, labels, cfg.val_fraction, np.random.default_rng([seed, 1]), group_of)
    return {"train": train, "val": val, "test": test}


def split_indices(labels: list[int], official: list[str], cfg: SplitConfig, *, seed: int,
                  fold: int | None, name: str, groups: list[list[int]] | None = None,
                  held: list[bool] | None = None) -> dict[str, list[int]]:
    """Indices per split ("train", "val", "test") for files with these labels / official splits;
    `groups` (lists of indices that are copies of each other) are never separated; `held` flags
    the images cfg.hold_out matches."""
    everything = list(range(len(labels)))
    group_of = {i: g for g, members in enumerate(groups or []) for i in members}
    if cfg.hold_out is not None:
        if held is None:
            raise DataError(f"dataset {name!r}: split.hold_out given but no image properties")
        return _held_out(labels, cfg, seed, name, held, group_of)
    if cfg.protocol == "official":
        if fold is not None:
            raise DataError(f"dataset {name!r}: fold={fold} given but protocol is 'official'")
        parts = {s: [i for i in everything if official[i] == s] for s in ("train", "val", "test")}
        if not parts["train"] or not parts["test"]:
            raise DataError(f"dataset {name!r} has no official train/test split "
                            f"(found {sorted(set(official))}); use protocol holdout or kfold")
        if not parts["val"]:
            parts["train"], parts["val"] = _carve(parts["train"], labels, cfg.val_fraction,
                                                  np.random.default_rng([seed, 1]), group_of)
        return parts
    if cfg.protocol == "holdout":
        if fold is not None:
            raise DataError(f"dataset {name!r}: fold={fold} given but protocol is 'holdout'")
        pool, test = _carve(everything, labels, cfg.test_fraction,
                            np.random.default_rng([seed, 0]), group_of)
        train, val = _carve(pool, labels, cfg.val_fraction, np.random.default_rng([seed, 1]),
                            group_of)
        return {"train": train, "val": val, "test": test}
    if fold is None or not 0 <= fold < cfg.folds:
        raise DataError(f"dataset {name!r}: kfold needs fold in 0..{cfg.folds - 1}, got {fold}")
    test = _kfold_test(everything, labels, cfg.folds, fold, seed, group_of)
    test_set = set(test)
    pool = [i for i in everything if i not in test_set]
    train, val = _carve(pool, labels, cfg.val_fraction, np.random.default_rng([seed, 1, fold]),
                        group_of)
    return {"train": train, "val": val, "test": test}


def group_log(parts: dict[str, list[int]], groups: list[list[int]]) -> dict[str, int]:
    """How many duplicate groups the split kept on one side, and how many it could not (only the
    publisher's official train/test folders separate groups)."""
    split_of = {i: name for name, idx in parts.items() for i in idx}
    sides = [{split_of[i] for i in g if i in split_of} for g in groups]
    return {"split_groups": len(groups),
            "split_grouped_files": sum(len(g) for g in groups),
            "split_groups_kept_together": sum(len(s) <= 1 for s in sides),
            "split_groups_separated": sum(len(s) > 1 for s in sides)}
