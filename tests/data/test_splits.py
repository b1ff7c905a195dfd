"""Group-aware splits: a group of duplicate files never straddles train/val/test, per-class
counts stay exact, and the split says how many groups it kept together. Checked on synthetic
labels and on the real 7023 set with its real near-duplicate groups."""
from __future__ import annotations

from collections import Counter

import pytest

from conftest import DATA_DIR
from mribench.config.schema import SplitConfig
from mribench.data.splits import group_log, split_indices

needs_real = pytest.mark.skipif(not (DATA_DIR / "brain-tumor-mri-7023").is_dir(),
                                reason=f"real data not found at {DATA_DIR}")


def assert_never_separated(parts: dict[str, list[int]], groups: list[list[int]]) -> None:
    split_of = {i: name for name, idx in parts.items() for i in idx}
    for g in groups:
        assert len({split_of[i] for i in g}) == 1, [(i, split_of[i]) for i in g]


def synthetic():
    """60 files of 3 classes; groups of 2-4 copies (one mixing two labels)."""
    labels = [i % 3 for i in range(60)]
    groups = [[0, 3, 6], [1, 4], [2, 5, 8, 11], [9, 10], [20, 23, 26, 29]]
    return labels, groups


@pytest.mark.parametrize("seed", range(5))
def test_holdout_keeps_groups_whole_and_class_counts_exact(seed):
    labels, groups = synthetic()
    cfg = SplitConfig(protocol="holdout", test_fraction=0.2, val_fraction=0.25)
    parts = split_indices(labels, ["all"] * 60, cfg, seed=seed, fold=None, name="x", groups=groups)
    assert_never_separated(parts, groups)
    assert sorted(sum(parts.values(), [])) == list(range(60))
    assert Counter(labels[i] for i in parts["test"]) == {0: 4, 1: 4, 2: 4}  # round(0.2 * 20)
    assert Counter(labels[i] for i in parts["val"]) == {0: 4, 1: 4, 2: 4}  # round(0.25 * 16)
    log = group_log(parts, groups)
    assert log == {"split_groups": 5, "split_grouped_files": 15, "split_groups_kept_together": 5,
                   "split_groups_separated": 0}


def test_kfold_keeps_groups_whole_and_tests_every_file_once():
    labels, groups = synthetic()
    cfg = SplitConfig(protocol="kfold", folds=4)
    tests = []
    for fold in range(4):
        parts = split_indices(labels, ["all"] * 60, cfg, seed=3, fold=fold, name="x", groups=groups)
        assert_never_separated(parts, groups)
        tests += parts["test"]
    assert sorted(tests) == list(range(60))


def test_official_validation_carve_out_keeps_training_groups_whole():
    labels, groups = synthetic()
    official = ["test" if i >= 48 else "train" for i in range(60)]
    groups = groups + [[30, 50]]  # a copy across the publisher's folders stays where it is
    cfg = SplitConfig(protocol="official", val_fraction=0.3)
    parts = split_indices(labels, official, cfg, seed=0, fold=None, name="x", groups=groups)
    assert parts["test"] == list(range(48, 60))
    assert_never_separated(parts, groups[:-1])
    assert group_log(parts, groups)["split_groups_separated"] == 1


@pytest.fixture(scope="module")
def real_7023():
    """Every file of the real 7023 set with its official split and perceptual hash."""
    from mribench.data import images
    from mribench.data.audit import find_groups
    from mribench.data.preparation import validate
    from mribench.data.registry import KNOWN
    from mribench.data.scan import scan_known

    # the default cache (BENCHMARK_CACHE_DIR, else ./.cache/mribench): hashes are keyed by file
    # content, so reusing them across test runs is safe and saves hashing 7019 JPEGs each time
    images.set_cache_dir(None)
    records = validate(scan_known(KNOWN["brain-tumor-mri-7023"],
                                  DATA_DIR / "brain-tumor-mri-7023"), None)
    records.sort(key=lambda r: str(r.path))
    classes = sorted({r.cls for r in records})
    groups = find_groups([r.sha for r in records], [r.phash for r in records], 16)
    return [classes.index(r.cls) for r in records], [r.split for r in records], groups


@needs_real
def test_real_7023_near_groups_never_straddle_our_splits(real_7023):
    labels, official, groups = real_7023
    near = groups["near"]
    assert len(labels) == 7019 and len(near) > 500  # 547 at 16 of 256 bits
    # the publisher's folders do separate groups (that is the leak the clean test removes)
    by_official = {"train": [i for i, s in enumerate(official) if s == "train"],
                   "test": [i for i, s in enumerate(official) if s == "test"]}
    assert group_log(by_official, near)["split_groups_separated"] > 300
    for protocol, fold in (("holdout", None), ("kfold", 0), ("kfold", 4), ("official", None)):
        cfg = SplitConfig(protocol=protocol, folds=5)
        parts = split_indices(labels, official, cfg, seed=1, fold=fold, name="7023", groups=near)
        log = group_log(parts, near)
        if protocol == "official":  # only the publisher's train/test boundary separates groups
            train_side = [[i for i in g if official[i] == "train"] for g in near]
            assert_never_separated({k: parts[k] for k in ("train", "val")},
                                   [g for g in train_side if len(g) > 1])
        else:
            assert_never_separated(parts, near)
            assert log["split_groups_kept_together"] == len(near)
        totals = Counter(labels)
        if protocol == "holdout":  # stratified: 20% of each class, to the file
            assert Counter(labels[i] for i in parts["test"]) == {
                c: round(0.2 * n) for c, n in totals.items()}
