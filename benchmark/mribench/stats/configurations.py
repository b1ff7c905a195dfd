"""Comparisons of two configurations that count the training seeds as well as the test images.

`paired.sign_flip` over test images (correctness averaged over seeds) answers "are these
particular trained models equally accurate on new test images?". A configuration is a recipe;
its trained models differ from seed to seed, and a seed that shifts a whole run's accuracy
(a spread of about 0.02 on a fixed test set is common) is not test-set luck the sign-flip can
see. Under a true null with such shifts (simulation in test_configurations.py: seed SD 0.1 on
the probit scale, accuracy spread 0.017) the sign-flip rejected 16% (350 images, 3 seeds) to
37% (1311 images, 3 or 5 seeds) of the time at nominal 5%, and 14% / 36% with one seed; this
test rejected 4.2-4.7% (4000 draws per cell, NOTES.md).

`compare_configurations` tests "these configurations are equally accurate" on the crossed
design the official split gives: every seed of each configuration scored the same test images.
Model (one per configuration c, seeds of a and b NOT paired with each other):

    x_c[s, i] = mu_c + u_c[i] + v_c[s] + w_c[s, i]

u_c[i]: the image's effect (correlated between a and b: hard images are hard for both),
v_c[s] ~ (0, sv2_c): the seed's shift of the whole run, independent between configurations,
w_c[s, i] ~ (0, sw2_c): seed-by-image interaction and Bernoulli noise.
The difference D = mean(a) - mean(b) = mean_i d[i], d[i] = abar[i] - bbar[i], has

    Var(D) = Var(u_a - u_b)/n + sw2_a/(n S_a) + sw2_b/(n S_b) + sv2_a/S_a + sv2_b/S_b.

The sample variance s2_d of d[i] over images is unbiased for the first three terms together
(the seed shifts are constant over images and drop out of it). Each configuration's seed
variance comes from its own two-way seeds x images ANOVA without replication, by the method of
moments on expected mean squares: E[MS_seed] = sw2 + n sv2, E[MS_resid] = sw2, so
sv2_hat = (MS_seed - MS_resid) / n, truncated at 0. Hence

    Var_hat(D) = s2_d/n + sum_c max(MS_seed_c - MS_resid_c, 0) / (n S_c),

a linear combination of independent mean squares (column means, row means and residuals of a
two-way table are orthogonal), referred to Student's t with Satterthwaite's (1946) degrees of
freedom. This is the classical crossed random-effects / variance-components approach (Searle,
Casella & McCulloch 1992, "Variance Components", ch. 4 and 11.1 on ANOVA estimators and
Satterthwaite approximations); Bouthillier et al. 2021 ("Accounting for variance in machine
learning benchmarks", MLSys) argue for counting the seeds in exactly this way. It makes no
assumption about seeds being paired across configurations (if the seeds of a and b are
positively correlated, e.g. through a shared data-order seed, it is conservative), and a and b
may have different numbers of seeds.

With one seed on either side the seed variance of that configuration cannot be estimated;
the function then falls back to the exact sign-flip test over images (the `paired.sign_flip`
computation), and says so: its statement is about these trained models, `covers` reads
"test images only (1 seed)".

Sign convention, as in compare.py: difference = accuracy of a minus accuracy of b.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from mribench.stats import paired
from mribench.stats.intervals import group_codes

METHOD_CROSSED = "t over test images and seeds (variance components, Satterthwaite df)"
METHOD_ONE_SEED = "exact sign-flip over test images (these trained models only)"
COVERS_CROSSED = "test images and training seeds"
COVERS_ONE_SEED = "test images only (1 seed)"


def compare_configurations(a, b, *, alpha: float = 0.05, power: float = 0.8,
                           margin: float | None = None, groups=None) -> dict:
    """Test that configurations a and b are equally accurate, from [seeds x images] tables of
    0/1 correctness on the same test images (rows seeds, columns images, same column order;
    a 1-D array is one seed). The seeds of a and b need not be paired nor equally many.

    Returns difference (mean accuracy of a minus b), ci95, p_value (two-sided), se, df,
    method, covers, seeds (S_a, S_b), images, accuracy_a, accuracy_b, detectable (the smallest
    absolute true difference this test finds with probability `power` at two-sided level
    `alpha`, taking se and df as the truth: k * se with k from the non-central t, about
    (t_{1-alpha/2, df} + t_{power, df}); 2.80 * se at large df), components
    (the three parts of se**2: images, seeds_a, seeds_b; seeds_* are 0 on the one-seed path),
    and, when `margin` is given, equivalence_p: the TOST p-value for |difference| < margin.
    Where the estimated variance is 0 (e.g. identical tables with no spread) se is 0, df and
    detectable are NaN, the interval is the point, and p is 1 if the difference is 0, else 0.
    On the one-seed path p is the exact sign-flip's while the interval, se and detectable are
    the t over images (df = images - 1); at the 5% boundary the two can disagree slightly.

    `groups` (one id per image column: copies of one image share an id) makes the image term
    cluster-robust: the same groups count for a and b, the variance of the mean difference is
    estimated from the groups' summed differences (the sandwich estimator of a cluster
    bootstrap, G / (G - 1) sum_g (T_g - n_g D)^2 / n^2), its degrees of freedom are G - 1, and
    the one-seed sign-flip flips whole groups. With every image its own group this is the
    image-level test exactly.
    """
    a, b = _table(a, "a"), _table(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"compare_configurations: a scored {a.shape[1]} images and b "
                         f"{b.shape[1]}: compare on the same test images only")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"compare_configurations: alpha and power must lie in (0, 1), got "
                         f"{alpha}, {power}")
    if margin is not None and not margin > 0:
        raise ValueError(f"compare_configurations: margin must be positive, got {margin}")
    (s_a, n), s_b = a.shape, b.shape[0]
    if n < 2:
        raise ValueError(f"compare_configurations: need at least 2 test images, got {n}")
    code, n_groups = group_codes(groups, n)
    if n_groups < 2:
        raise ValueError(f"compare_configurations: need at least 2 duplicate groups, got "
                         f"{n_groups} (of {n} images)")
    base = {"seeds": (int(s_a), int(s_b)), "images": int(n), "groups": int(n_groups),
            "accuracy_a": float(a.mean()), "accuracy_b": float(b.mean())}
    if min(s_a, s_b) < 2:
        d = a.mean(axis=0) - b.mean(axis=0)
        v_img = float(_image_variance(d, code, n_groups))
        difference, variance, df = float(d.mean()), v_img, float(n_groups - 1)
        parts = {"images": v_img, "seeds_a": 0.0, "seeds_b": 0.0}
        # exact: every difference (and a group's sum of them) is a multiple of 1 / lcm(S_a, S_b)
        summed = np.bincount(code, weights=d, minlength=n_groups)
        p_value = paired.sign_flip(summed, math.lcm(int(s_a), int(s_b)))["p_value"]
        method, covers = METHOD_ONE_SEED, COVERS_ONE_SEED
    else:
        vc = _variance_components(a, b, None if groups is None else code)
        difference, variance, df = (float(vc[k]) for k in ("difference", "variance", "df"))
        parts = {"images": float(vc["var_images"]), "seeds_a": float(vc["var_seeds_a"]),
                 "seeds_b": float(vc["var_seeds_b"])}
        p_value = None
        method, covers = METHOD_CROSSED, COVERS_CROSSED
    t = _t_inference(np.float64(difference), np.sqrt(np.float64(variance)), np.float64(df),
                     alpha=alpha, power=power, margin=margin)
    out = {**base, "difference": difference, "ci95": (float(t["ci_low"]), float(t["ci_high"])),
           "p_value": float(t["p_value"]) if p_value is None else p_value,
           "se": float(t["se"]), "df": df if variance > 0 else math.nan,
           "detectable": float(t["detectable"]), "method": method, "covers": covers,
           "components": parts}
    if margin is not None:
        out["margin"] = float(margin)
        out["equivalence_p"] = float(t["equivalence_p"])
    return out


def _table(x, name: str) -> np.ndarray:
    """[seeds, images] float table of 0/1 (a 1-D array is one seed)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"compare_configurations: {name} must be a non-empty [seeds, images] "
                         f"table, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"compare_configurations: {name} has NaN (keep only the images every "
                         "seed scored: the design must be crossed)")
    if not np.isin(x, (0.0, 1.0)).all():
        raise ValueError(f"compare_configurations: {name} must hold 0/1 correctness")
    return x


def _two_way(x: np.ndarray):
    """Image means, MS_seed and MS_resid of [..., S, n] seeds x images tables (S, n >= 2)."""
    s, n = x.shape[-2:]
    grand = x.mean(axis=(-2, -1))
    rows, cols = x.mean(axis=-1), x.mean(axis=-2)
    ms_seed = n * ((rows - grand[..., None]) ** 2).sum(axis=-1) / (s - 1)
    resid = x - rows[..., :, None] - cols[..., None, :] + grand[..., None, None]
    ms_resid = (resid ** 2).sum(axis=(-2, -1)) / ((s - 1) * (n - 1))
    return cols, ms_seed, ms_resid


def _image_variance(d: np.ndarray, code: np.ndarray, n_groups: int) -> np.ndarray:
    """Variance of mean(d) over [..., n] per-image differences, images clustered by `code`:
    G / (G - 1) sum_g (T_g - n_g mean)^2 / n^2; with singleton groups var(d, ddof=1) / n."""
    n = d.shape[-1]
    onehot = np.zeros((n, n_groups))
    onehot[np.arange(n), code] = 1.0
    mean = d.mean(axis=-1, keepdims=True)
    resid = (d - mean) @ onehot  # T_g - n_g * mean
    return n_groups / (n_groups - 1) * (resid ** 2).sum(axis=-1) / n ** 2


def _variance_components(a: np.ndarray, b: np.ndarray, code: np.ndarray | None = None) -> dict:
    """Difference, its variance estimate and Satterthwaite df, for [..., S_a, n] and
    [..., S_b, n] tables (leading axes: independent replicates, computed at once). S >= 2.
    `code`: group codes of the n images (None: each image its own group)."""
    s_a, n = a.shape[-2:]
    s_b = b.shape[-2]
    if s_a < 2 or s_b < 2 or n < 2 or b.shape[-1] != n:
        raise ValueError(f"_variance_components: need >= 2 seeds each and the same >= 2 images, "
                         f"got {a.shape[-2:]} and {b.shape[-2:]}")
    d = a.mean(axis=-2) - b.mean(axis=-2)
    if code is None:
        var_images, m = d.var(axis=-1, ddof=1) / n, n
        _, seed_a, res_a = _two_way(a)
        _, seed_b, res_b = _two_way(b)
    else:
        # copies of one image: the image term over groups, and the seed ANOVA on the group
        # means (a seed's shift moves every group mean alike; on images, copies would make the
        # seeds' row means noisier and count the seed-by-image noise twice)
        m = int(code.max()) + 1
        var_images = _image_variance(d, code, m)
        onehot = np.zeros((n, m))
        onehot[np.arange(n), code] = 1.0
        onehot /= onehot.sum(axis=0)
        _, seed_a, res_a = _two_way(a @ onehot)
        _, seed_b, res_b = _two_way(b @ onehot)
    # per-configuration seed term sv2_c / S_c = (MS_seed - MS_resid) / (m S_c), truncated at 0
    # (m: images, or groups of copies)
    keep_a, keep_b = seed_a > res_a, seed_b > res_b
    var_seeds_a = np.where(keep_a, (seed_a - res_a) / (m * s_a), 0.0)
    var_seeds_b = np.where(keep_b, (seed_b - res_b) / (m * s_b), 0.0)
    variance = var_images + var_seeds_a + var_seeds_b
    # Satterthwaite: df = (sum g_j MS_j)^2 / sum (g_j MS_j)^2 / df_j over the mean squares used
    denom = var_images ** 2 / (m - 1)
    for keep, ms_seed, ms_res, s in ((keep_a, seed_a, res_a, s_a), (keep_b, seed_b, res_b, s_b)):
        denom = denom + np.where(keep, (ms_seed / (m * s)) ** 2 / (s - 1)
                                 + (ms_res / (m * s)) ** 2 / ((s - 1) * (m - 1)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(variance > 0, variance ** 2 / denom, np.nan)
    return {"difference": d.mean(axis=-1), "var_images": var_images,
            "var_seeds_a": var_seeds_a, "var_seeds_b": var_seeds_b,
            "variance": variance, "df": df}


def _t_inference(difference, se, df, *, alpha=0.05, power=0.8, margin=None) -> dict:
    """Two-sided t p-value, 95% interval, detectable difference and TOST p (vectorised).
    se == 0: p is 1 when the difference is 0 and 0 otherwise, the interval is the point,
    detectable is NaN."""
    difference, se, df = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                               for v in (difference, se, df)))
    ok = se > 0
    safe_se, safe_df = np.where(ok, se, 1.0), np.where(ok, df, 1.0)
    t = difference / safe_se
    p = np.where(ok, 2 * sps.t.sf(np.abs(t), safe_df), np.where(difference == 0, 1.0, 0.0))
    half = np.where(ok, sps.t.ppf(0.975, safe_df) * se, 0.0)
    detectable = np.where(ok, _detectable_multiplier(safe_df, alpha, power) * se, np.nan)
    out = {"p_value": np.minimum(p, 1.0), "se": se, "ci_low": difference - half,
           "ci_high": difference + half, "detectable": detectable}
    if margin is not None:  # two one-sided tests of H0: |delta| >= margin
        lower = sps.t.sf((difference + margin) / safe_se, safe_df)
        upper = sps.t.cdf((difference - margin) / safe_se, safe_df)
        out["equivalence_p"] = np.where(ok, np.maximum(lower, upper),
                                        np.where(np.abs(difference) < margin, 0.0, 1.0))
    return out


def _detectable_multiplier(df, alpha: float, power: float) -> np.ndarray:
    """k such that the two-sided level-alpha t test with `df` degrees of freedom has power
    `power` against a true difference of k standard errors: the non-centrality solving
    nct.sf(c, df, k) + nct.cdf(-c, df, k) = power, c = t_{1-alpha/2, df} (vectorised
    bisection). At large df it is z_{1-alpha/2} + z_power (2.80 for 0.05 and 0.8); the
    textbook shortcut t_{1-alpha/2, df} + t_{power, df} is 1.7% smaller at df 3.4 and 7% at
    df 1.7."""
    df = np.asarray(df, dtype=np.float64)
    c = sps.t.ppf(1 - alpha / 2, df)

    def reach(k):  # power at non-centrality k; boost's far lower tail can return NaN (~0)
        return sps.nct.sf(c, df, k) + np.nan_to_num(sps.nct.cdf(-c, df, k), nan=0.0)

    lo = np.zeros_like(df)
    hi = np.maximum(c + sps.t.ppf(power, df), 1.0)
    for _ in range(8):  # widen until the power is reached (always within a few doublings)
        short = reach(hi) < power
        if not short.any():
            break
        lo, hi = np.where(short, hi, lo), np.where(short, 2 * hi, hi)
    for _ in range(48):
        mid = (lo + hi) / 2
        low_power = reach(mid) < power
        lo, hi = np.where(low_power, mid, lo), np.where(low_power, hi, mid)
    return (lo + hi) / 2
