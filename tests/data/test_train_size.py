"""train_per_class: nested training subsets from the training side of the split only; duplicate
groups whole; validation, test and clean test the same for every size. Synthetic groups, then
the real 7023 set with its real near-duplicate groups."""
from __future__ import annotations

from collections import Counter

import pytest

from mribench.config.schema import DatasetConfig, PreprocessConfig, SplitConfig
from mribench.data.preparation import prepare
from mribench.data.train_size import take_per_class

SIZES = [2, 5, 0.5, 12, "all"]  # 0.5 of 20 per class = 10: between 5 and 12


def synthetic():
    """60 training files of 3 classes (20 each); groups of 2-4 copies."""
    labels = [i % 3 for i in range(60)]
    groups = [[0, 3, 6], [1, 4], [2, 5, 8, 11], [9, 12], [20, 23, 26, 29]]
    return list(range(60)), labels, groups


@pytest.mark.parametrize("seed", range(4))
def test_sizes_are_nested_prefixes_with_groups_whole(seed):
    train, labels, groups = synthetic()
    taken = [set(take_per_class(train, labels, groups, size, seed)) for size in SIZES]
    for smaller, larger in zip(taken, taken[1:]):
        assert smaller < larger  # strictly: each size adds files
    for kept, size in zip(taken, SIZES):
        for g in groups:  # a group is in or out as a whole
            assert len({i in kept for i in g}) == 1, (size, g)
        want = 20 if size == "all" else round(size * 20) if isinstance(size, float) else size
        counts = Counter(labels[i] for i in kept)
        # at least the size; more only by the extra files of the last group taken (<= 3)
        assert all(want <= counts[c] <= want + 3 for c in range(3)), (size, counts)
    assert take_per_class(train, labels, groups, None, seed) == train


def test_the_seed_draws_another_subset():
    train, labels, groups = synthetic()
    draws = {tuple(take_per_class(train, labels, groups, 5, seed)) for seed in range(4)}
    assert len(draws) > 1


def test_real_sizes_share_val_and_test_and_nest(data_dir):
    pre = PreprocessConfig(image_size=128)
    split = SplitConfig(protocol="official")

    def files(data, part):
        return {s.path for s in data.splits[part]}

    # the set's first 60 files per class and folder, then the split, then the sizes
    runs = {size: prepare(DatasetConfig(name="brain-tumor-mri-7023", subset_per_class=60,
                                        train_per_class=size),
                          split, pre, seed=0, fold=None, data_dir=str(data_dir))
            for size in (10, 25, "all")}
    whole = runs["all"]
    for small, large in ((10, 25), (25, "all")):
        assert files(runs[small], "train") < files(runs[large], "train")
    for data in runs.values():
        assert files(data, "val") == files(whole, "val")
        assert files(data, "test") == files(whole, "test")
        assert {s.path for s in data.clean_test} == {s.path for s in whole.clean_test}
    counts = Counter(s.label for s in runs[10].splits["train"])
    assert sorted(counts) == [0, 1, 2, 3] and all(10 <= n <= 13 for n in counts.values())
    assert runs[10].audit["n_train_available"] == len(whole.splits["train"])
