"""`train_per_class`: a smaller training set, drawn after the split from its training side only.

Validation and test images stay exactly those of the full split, so every training-set size of
a seed is scored on the same test images and its curve compares like with like. Each class's
training units (a duplicate group counts as one unit and stays whole; a single file is a unit
of its own) are put in one order by a permutation seeded with the cell's seed, and a size takes
the shortest prefix of that order that reaches it: for one seed, the 25-per-class subset
contains the 10-per-class one by construction (nested subsets, as learning curves need). A
group may carry a size past its target by its extra files; the logged n_train says how many
were used.
"""
from __future__ import annotations

import numpy as np


def target(size: int | float, available: int) -> int:
    """Files wanted of a class with `available` training files: N (at most all), or a fraction
    of them (at least one)."""
    if isinstance(size, float):
        return min(max(round(size * available), 1), available)
    return min(size, available)


def take_per_class(train: list[int], labels: list[int], groups: list[list[int]],
                   size: int | float | str | None, seed: int) -> list[int]:
    """The training indices a size keeps, sorted; all of them for None or "all"."""
    if size is None or size == "all":
        return train
    group_of = {i: g for g, members in enumerate(groups) for i in members}
    units: dict[int, list[int]] = {}
    for i in sorted(train):
        units.setdefault(group_of.get(i, -1 - i), []).append(i)
    by_class: dict[int, list[list[int]]] = {}
    for members in units.values():  # a group's class: its first file's (groups rarely mix)
        by_class.setdefault(labels[members[0]], []).append(members)
    kept: list[int] = []
    for cls in sorted(by_class):
        ordered = by_class[cls]
        # one generator per class and seed: a class's order does not depend on the others
        order = np.random.default_rng([seed, 2, cls]).permutation(len(ordered))
        want = target(size, sum(len(u) for u in ordered))
        count = 0
        for u in order:
            if count >= want:
                break
            kept += ordered[u]
            count += len(ordered[u])
    return sorted(kept)
