"""Intervals and paired tests: against scipy/statsmodels/baycomp on fixed inputs, and by
simulation under a known truth (type-I error under a true null, coverage of the intervals).

The simulations are small (a few hundred draws each, about a second) but large enough that
a broken method fails: at 400 draws the Monte Carlo standard error of a 5% rate is 1.1 points.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import expit
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from mribench import stats
from mribench.stats import paired


def test_wilson_matches_statsmodels_and_the_formula():
    low, high = stats.wilson(31, 40)
    assert (low, high) == pytest.approx(proportion_confint(31, 40, method="wilson"))
    z, p, n = sps.norm.ppf(0.975), 31 / 40, 40
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    with pytest.raises(ValueError, match="at least one image"):
        stats.wilson(0, 0)


def test_holm_matches_hand_computation():
    # sorted p: 0.01*3=0.03, 0.02*2=0.04, 0.04*1=0.04 (monotone) -> back in input order
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_sign_flip_is_scipys_exact_permutation_test(seeds):
    rng = np.random.default_rng(seeds)
    for _ in range(3):
        d = rng.integers(-seeds, seeds + 1, 13) / seeds
        exact = sps.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis),
                                     permutation_type="samples", n_resamples=np.inf)
        assert paired.sign_flip(d, seeds)["p_value"] == pytest.approx(exact.pvalue, rel=1e-9)


def test_sign_flip_with_one_seed_is_the_exact_mcnemar_test():
    # 8 images only A gets right, 2 only B, 15 ties
    d = np.array([1.0] * 8 + [-1.0] * 2 + [0.0] * 15)
    table = [[10, 8], [2, 5]]
    assert paired.sign_flip(d, 1)["p_value"] == pytest.approx(
        mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert paired.sign_flip(np.zeros(5), 3)["p_value"] == 1.0
    with pytest.raises(ValueError, match="multiples of 1/3"):
        paired.sign_flip(np.array([0.5]), 3)


def test_nadeau_bengio_is_baycomps_correlated_t():
    baycomp = pytest.importorskip("baycomp")
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.80, 0.03, 10), rng.normal(0.78, 0.03, 10)  # 5 folds x 2 repeats
    mean, var, df = baycomp.CorrelatedTTest.compute_statistics(b, a, runs=2)  # a - b
    nb = paired.nadeau_bengio(list(a - b), n_train=4, n_test=1)  # k=5: n_test/n_train = 1/4
    assert nb["mean_difference"] == pytest.approx(mean)
    posterior = sps.t(df, loc=mean, scale=math.sqrt(var))
    assert (nb["ci95_low"], nb["ci95_high"]) == pytest.approx(posterior.ppf([0.025, 0.975]))
    assert nb["p_value"] == pytest.approx(2 * min(posterior.cdf(0), posterior.sf(0)))
    with pytest.raises(ValueError, match="at least 2 repeats"):
        paired.nadeau_bengio([0.1], 4, 1)
    with pytest.raises(ValueError, match="sizes must be positive"):
        paired.nadeau_bengio([0.1, 0.2], float("nan"), 1)


def test_two_level_bootstrap_shapes_and_means():
    crossed = np.array([[1, 0, 1, 1], [1, 1, 0, 1.0]])
    r = stats.two_level_bootstrap(crossed, n_boot=500)
    assert r["mean"] == pytest.approx(0.75) and r["seeds"] == 2 and r["images"] == 4
    assert 0 <= r["ci95_low"] <= 0.75 <= r["ci95_high"] <= 1
    nested = np.array([[1, 1, np.nan, np.nan], [np.nan, np.nan, 0, 1]])
    r = stats.two_level_bootstrap(nested, n_boot=500)
    assert r["mean"] == pytest.approx(0.75) and r["images"] == 4
    assert stats.two_level_bootstrap(np.ones((3, 5)), n_boot=50)["ci95_low"] == 1.0
    with pytest.raises(ValueError, match="seed scored no image"):
        stats.two_level_bootstrap(np.array([[1.0, np.nan], [np.nan, np.nan]]))


# ---- simulations under a known truth ----------------------------------------------------

def _two_configs(rng, images: int, seeds: int, spread: float):
    """Two configurations equally accurate on the population of images (a true null), each with
    its own per-image skill, so its seeds agree with each other (correlated seeds)."""
    base = rng.normal(1.0, 1.5, images)
    p_a, p_b = (expit(base + rng.normal(0, spread, images)) for _ in range(2))
    return rng.random((seeds, images)) < p_a, rng.random((seeds, images)) < p_b


def test_per_image_test_holds_its_level_where_pooled_mcnemar_does_not():
    """Under the null, with seed-to-seed correlation about 0.5: the pooled McNemar over images x
    seeds rejects about 3x too often; the sign-flip over images stays at 5%."""
    rng, draws = np.random.default_rng(0), 400
    pooled = per_image = 0
    correlations = []
    for _ in range(draws):
        a, b = _two_configs(rng, images=200, seeds=3, spread=2.5)
        table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
        pooled += mcnemar(table, exact=True).pvalue < 0.05
        per_image += paired.sign_flip((a.astype(float) - b).mean(axis=0), 3)["p_value"] < 0.05
        correlations.append(np.corrcoef(a[0], a[1])[0, 1])
    assert 0.4 < np.mean(correlations) < 0.65
    assert 0.02 <= per_image / draws <= 0.075, per_image / draws
    assert pooled / draws >= 0.10, pooled / draws


def _centroid_accuracy(x_train, y_train, x_test, y_test) -> float:
    centres = np.stack([x_train[y_train == k].mean(axis=0) for k in (0, 1)])
    predicted = ((x_test[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    return float((predicted == y_test).mean())


def test_corrected_resampled_t_holds_its_level_where_the_plain_t_does_not():
    """Repeated 5-fold CV (3 repeats) of two learners that are equally good on the population
    (nearest centroid on two feature blocks drawn from the same law) but not on any one data
    set: the plain paired t over the 15 folds rejects far too often, Nadeau-Bengio does not."""
    rng, draws, n = np.random.default_rng(0), 300, 120
    plain = corrected = 0
    for _ in range(draws):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 1, (n, 4))
        x[:, [0, 2]] += 0.5 * y[:, None]
        diffs = []
        for _ in range(3):  # repeats of 5-fold CV
            folds = rng.permutation(n).reshape(5, -1)
            for k, te in enumerate(folds):
                tr = np.concatenate([f for j, f in enumerate(folds) if j != k])
                diffs.append(_centroid_accuracy(x[tr][:, :2], y[tr], x[te][:, :2], y[te])
                             - _centroid_accuracy(x[tr][:, 2:], y[tr], x[te][:, 2:], y[te]))
        diffs = np.array(diffs)
        plain += diffs.std() > 0 and sps.ttest_1samp(diffs, 0).pvalue < 0.05
        corrected += paired.nadeau_bengio(list(diffs), n * 4 // 5, n // 5)["p_value"] < 0.05
    assert corrected / draws <= 0.07, corrected / draws
    assert plain / draws >= 0.15, plain / draws


@pytest.mark.parametrize("seed_sd, nested", [(0.1, False), (0.25, False), (0.1, True)])
def test_two_level_bootstrap_covers_the_population_accuracy(seed_sd, nested):
    """Per-image skill, per-seed shift and seed-by-image noise on the logit scale; the truth is
    the accuracy over the whole population of images and seeds. seed_sd 0.1 / 0.25 give a
    seed-to-seed accuracy spread of 0.03 / 0.04 (cpu_demo: 0.01-0.03). Measured coverage:
    0.99 / 0.96; with 3 seeds and a spread of 0.06 (seed_sd 0.4) it drops to 0.90: three seeds
    cannot show a large seed effect to any method."""
    big = np.random.default_rng(99)
    truth = expit(0.6 + big.normal(0, 1.5, 10**6) + big.normal(0, seed_sd, 10**6)
                  + big.normal(0, 0.7, 10**6)).mean()
    rng, seeds, images = np.random.default_rng(1), 3, 200
    draws = 150 if nested else 250
    covered = 0
    for d in range(draws):
        shift = rng.normal(0, seed_sd, seeds)
        if nested:  # hold-out: every seed its own test images
            values = np.full((seeds, seeds * images), np.nan)
            for s in range(seeds):
                p = expit(0.6 + rng.normal(0, 1.5, images) + shift[s] + rng.normal(0, 0.7, images))
                values[s, s * images:(s + 1) * images] = rng.random(images) < p
        else:
            skill = rng.normal(0, 1.5, images)
            p = expit(0.6 + skill[None] + shift[:, None] + rng.normal(0, 0.7, (seeds, images)))
            values = (rng.random((seeds, images)) < p).astype(float)
        r = stats.two_level_bootstrap(values, n_boot=1000, seed=d)
        covered += r["ci95_low"] <= truth <= r["ci95_high"]
    assert covered / draws >= 0.92, covered / draws


def test_seed_only_interval_misses_the_test_sample_and_wilson_covers_one_run():
    """On one fixed test set of 150 images, the t-interval over 5 seeds covers the population
    accuracy far less than 95% of the time (it ignores which images were drawn); the two-level
    bootstrap on the same runs does; one run's Wilson interval covers its population accuracy."""
    rng, draws, images = np.random.default_rng(2), 300, 150
    truth = expit(0.6 + np.random.default_rng(9).normal(0, 3, 10**6)).mean()
    seed_only = both = wilson = 0
    for d in range(draws):
        p = expit(0.6 + rng.normal(0, 3, images))  # most images easy or hard for every seed
        runs = (rng.random((5, images)) < p).astype(float)
        s = stats.summarize(runs.mean(axis=1).tolist())
        seed_only += s["ci95_low"] <= truth <= s["ci95_high"]
        r = stats.two_level_bootstrap(runs, n_boot=1000, seed=d)
        both += r["ci95_low"] <= truth <= r["ci95_high"]
        one = rng.random(images) < expit(0.6 + rng.normal(0, 3, images))  # fresh test images
        low, high = stats.wilson(int(one.sum()), images)
        wilson += low <= truth <= high
    assert seed_only / draws <= 0.85, seed_only / draws
    assert both / draws >= 0.92, both / draws
    assert 0.92 <= wilson / draws <= 0.98, wilson / draws
