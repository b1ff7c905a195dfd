"""Intervals for a configuration's accuracy, and what each one covers.

- `wilson`: one run, one test set. Covers which test images were drawn, for that trained model.
- `summarize`: Student-t over the runs' values (seeds, folds). Covers training noise only (the
  initialisation, batch order, validation draw) on a fixed test set; with 3 seeds its t
  multiplier is 4.3 and the spread itself is unstable. Kept as the "seed spread" figure.
- `two_level_bootstrap`: test images and seeds resampled together. Covers both, and is the
  interval the report leads with.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

BOOTSTRAP_SAMPLES = 4000


def summarize(values: list[float]) -> dict:
    """n, mean, sample std and a Student-t 95% confidence interval of the mean.

    With a single value the spread is unknown: std and the interval are NaN, not zero.
    """
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarize: no values (a metric missing from every run?)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"summarize: non-finite values {arr.tolist()}")
    n, mean = int(arr.size), float(arr.mean())
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan}
    std = float(arr.std(ddof=1))
    half = float(sps.t.ppf(0.975, df=n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


def wilson(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval for one run's accuracy (statsmodels' proportion_confint)."""
    from statsmodels.stats.proportion import proportion_confint

    if total <= 0:
        raise ValueError(f"wilson: need at least one image, got {total}")
    low, high = proportion_confint(correct, total, alpha=0.05, method="wilson")
    return float(low), float(high)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values in the input order (statsmodels' multipletests)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def two_level_bootstrap(values: np.ndarray, n_boot: int = BOOTSTRAP_SAMPLES,
                        seed: int = 0, groups=None) -> dict:
    """Mean and 95% percentile interval of a [seeds, images] matrix of per-image scores
    (correctness 0/1, or a paired difference of two configurations' correctness).

    Each bootstrap sample draws the seeds with replacement and the test images with
    replacement. Where every seed scored the same images (official split, k-fold) the two are
    crossed: one image draw serves all seeds, since an image that is hard is hard for every seed.
    Where seeds scored different images (NaN where a seed did not score an image: hold-out), each
    drawn seed gets its own draw of its own images. Hand-written: scipy.stats.bootstrap resamples
    one level only. For a crossed design this interval is slightly conservative (the seed-by-image
    interaction enters both levels, cf. Owen's pigeonhole bootstrap); the coverage simulation in
    tests/stats/test_stats.py measures it.

    `groups` (one id per image column) makes it a cluster bootstrap: copies of one image are
    one draw, drawn with all their images, since a copy is not new evidence. The mean of a draw
    is then a ratio (images drawn vary in number). Without groups every image is its own group.
    tests/stats/test_cluster_bootstrap.py measures the coverage under clustered duplicates.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"two_level_bootstrap: need a non-empty [seeds, images] matrix, got "
                         f"shape {v.shape}")
    rng = np.random.default_rng(seed)
    n_seeds, n_images = v.shape
    code, n_groups = group_codes(groups, n_images)
    scored = ~np.isnan(v)
    if not scored.any(axis=1).all():
        raise ValueError("two_level_bootstrap: a seed scored no image")
    seed_means = np.array([row[ok].mean() for row, ok in zip(v, scored)])
    if scored.all():
        seeds = _counts(rng, n_boot, n_seeds)  # how often each seed / group is drawn, [B, S]
        images = _counts(rng, n_boot, n_groups)[:, code]  # each image as often as its group
        samples = ((seeds @ v) * images).sum(axis=1) / (n_seeds * images.sum(axis=1))
    else:
        picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        samples = np.zeros(n_boot)
        for s in range(n_seeds):
            own, own_code = v[s, scored[s]], code[scored[s]]
            kept, own_code = np.unique(own_code, return_inverse=True)
            size = np.bincount(own_code, minlength=len(kept)).astype(np.float64)
            total = np.bincount(own_code, weights=own, minlength=len(kept))
            for j in range(n_seeds):
                rows = np.nonzero(picks[:, j] == s)[0]
                drawn = _counts(rng, len(rows), len(kept))
                samples[rows] += (drawn @ total) / (drawn @ size)
        samples /= n_seeds
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"mean": float(seed_means.mean()), "ci95_low": float(low), "ci95_high": float(high),
            "seeds": n_seeds, "images": int(scored.any(axis=0).sum()),
            "groups": int(len(np.unique(code[scored.any(axis=0)])))}


def group_codes(groups, n: int) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 of n images' group ids (None: each image its own group)."""
    if groups is None:
        return np.arange(n), n
    ids = np.asarray(groups)
    if ids.shape != (n,):
        raise ValueError(f"groups: expected one group id per image ({n}), got shape {ids.shape}")
    _, code = np.unique(ids, return_inverse=True)
    return code, int(code.max()) + 1


def _counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """[n_boot, n]: how many times each of n items is drawn in each of n_boot resamples."""
    draws = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)
