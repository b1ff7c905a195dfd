"""Duplicate-aware uncertainty: simulations under a known truth where test images come in
groups of copies (a copy gets the same prediction as its original), as on the public brain-MRI
sets. Resampling images treats every copy as new evidence and gives intervals that are too
narrow and tests that reject too often; resampling groups (a cluster bootstrap) does not."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mribench.stats import compare_configurations, two_level_bootstrap
from mribench.stats.configurations import _variance_components

REPLICATES = 1000
PAIRED_REPLICATES = 600
GROUPS = 60
SIZES = np.array([1, 1, 1, 1, 2, 3, 4, 6, 8, 10])  # copies per distinct image (mean 3.7)


def _groups(rng: np.random.Generator) -> np.ndarray:
    """Group id per test image: GROUPS distinct images with 1-10 copies each."""
    return np.repeat(np.arange(GROUPS), rng.choice(SIZES, GROUPS))


def test_cluster_bootstrap_covers_at_its_nominal_rate_where_images_do_not():
    # truth: each distinct image is classified correctly with probability 0.7, its copies alike;
    # the test accuracy (a ratio over copies) estimates 0.7 whatever the copy counts
    rng = np.random.default_rng(2026)
    truth, covered = 0.7, {"images": 0, "groups": 0}
    for _ in range(REPLICATES):
        group = _groups(rng)
        correct = (rng.random(GROUPS) < truth)[group].astype(float)[None, :]  # one seed
        for how, ids in (("images", None), ("groups", group)):
            r = two_level_bootstrap(correct, n_boot=500, seed=int(rng.integers(2**31)),
                                    groups=ids)
            covered[how] += r["ci95_low"] <= truth <= r["ci95_high"]
    coverage = {k: v / REPLICATES for k, v in covered.items()}
    print(f"\n95% interval coverage over {REPLICATES} replicates ({GROUPS} distinct images, "
          f"1-10 copies each, 500 bootstrap draws each): {coverage}")
    # binomial SE of a coverage near 0.95 over 1000 replicates: 0.007
    assert 0.925 <= coverage["groups"] <= 0.97
    assert coverage["images"] < 0.85


def test_groups_report_how_many_and_singletons_change_nothing():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 2, (3, 40)).astype(float)
    plain = two_level_bootstrap(v, n_boot=300, seed=1)
    alone = two_level_bootstrap(v, n_boot=300, seed=1, groups=np.arange(40))
    assert plain == alone and plain["groups"] == 40 and plain["images"] == 40
    assert two_level_bootstrap(v, n_boot=300, groups=np.arange(40) // 4)["groups"] == 10
    with pytest.raises(ValueError, match="one group id per image"):
        two_level_bootstrap(v, groups=[1, 2])


def _null_tables(rng, seeds: int, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two equally accurate configurations (on new images) that differ on which images they get
    right: each distinct image has its own chance under a and under b, both drawn from the same
    Beta(2, 1); each seed gets it right with that chance; copies of an image alike."""
    chance_a, chance_b = rng.beta(2, 1, GROUPS), rng.beta(2, 1, GROUPS)
    a = (rng.random((seeds, GROUPS)) < chance_a)[:, group].astype(float)
    b = (rng.random((seeds, GROUPS)) < chance_b)[:, group].astype(float)
    return a, b


@pytest.mark.parametrize("seeds", [1, 3])
def test_paired_tests_over_groups_hold_their_level_where_images_do_not(seeds):
    rng = np.random.default_rng(7 + seeds)
    rejected = {"images": 0, "groups": 0}
    for _ in range(PAIRED_REPLICATES):
        group = _groups(rng)
        a, b = _null_tables(rng, seeds, group)
        if (a == b).all():
            continue  # no discordant image: both tests accept (p = 1)
        for how, ids in (("images", None), ("groups", group)):
            rejected[how] += compare_configurations(a, b, groups=ids)["p_value"] < 0.05
    rate = {k: v / PAIRED_REPLICATES for k, v in rejected.items()}
    print(f"\nfalse positives at nominal 0.05, {seeds} seed(s), {PAIRED_REPLICATES} replicates "
          f"under a true null with copies: {rate}")
    assert rate["groups"] <= 0.075  # binomial SE near 0.05 over 600 replicates: 0.009
    assert rate["images"] > 0.075  # every copy counted as new evidence (0.10 to 0.43 measured)


def test_group_variance_with_singleton_groups_is_the_image_variance():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, (2, 3, 50)).astype(float)
    plain, alone = _variance_components(a, b), _variance_components(a, b, np.arange(50))
    for key in ("variance", "df", "var_images"):
        assert np.allclose(plain[key], alone[key])
    r = compare_configurations(a, b, groups=np.arange(50) // 5)
    assert r["groups"] == 10 and r["images"] == 50


def test_report_comparisons_read_the_groups_from_the_predictions():
    from mribench.stats.compare import paired_rows

    runs = pd.DataFrame([{"run_id": f"{c}{s}", "status": "FINISHED", "dataset": "d",
                          "config_key": c, "model": c, "strategy": "full",
                          "seed": str(s), "fold": "-", "split.protocol": "official",
                          "n_train": "80", "n_val": "20"}
                         for c in ("A", "B") for s in (0, 1)])
    group = np.arange(40) // 4  # ten images, four copies each

    def predictions(run_id: str) -> pd.DataFrame:
        true = np.array([0, 1] * 20)
        wrong = (group % 3 == 0) if run_id.startswith("B") else np.zeros(40, bool)
        return pd.DataFrame({"file": [f"img{i}.jpg" for i in range(40)], "true": true,
                             "pred": np.where(wrong, 1 - true, true), "clean": True,
                             "group": [f"g{g}" for g in group]})

    full = next(r for r in paired_rows(runs, predictions) if r["subset"] == "full")
    assert (full["images"], full["groups"]) == (40, 10)
    b = np.repeat((group % 3 == 0)[None] == 0, 2, axis=0).astype(float)
    direct = compare_configurations(np.ones((2, 40)), b, groups=group)
    assert full["p_value"] == pytest.approx(direct["p_value"])
    # over images the same copies would look like 40 independent images: a smaller p
    assert compare_configurations(np.ones((2, 40)), b)["p_value"] < full["p_value"]
