"""Selective prediction: decide on the images a model is most confident about, refer the rest.

Images are ranked by a confidence score (the calibrated max probability, or minus the entropy
of the class probabilities); keeping the top i of n gives coverage i/n and risk = the error
rate of the kept images. The risk-coverage curve's area (AURC, the mean risk over the n
coverages; Geifman et al. 2019, fd-shifts / Jaeger et al. ICLR 2023) is low when errors sit
at the bottom of the ranking. It mixes accuracy and ranking, so E-AURC subtracts the AURC of a
perfect ranking of the same errors: for E errors in n images, risk is 0 up to coverage
(n - E)/n, then (i - n + E)/i, whose mean tends to r + (1 - r) ln(1 - r) with r = E/n. A random
ranking's expected AURC is r (every prefix of a random order has error rate r on average).

Ties (a knn cell's vote fractions, saturated probabilities) are broken at random in
expectation, not by input order: inside a group of equal scores the expected errors grow
linearly, so tied images neither help nor hurt the ranking. Everything is vectorised over rows
so the report's bootstrap ranks thousands of resamples at once.
"""
from __future__ import annotations

import math

import numpy as np

COVERAGES = (0.8, 0.9)  # accuracy at these coverages is logged and reported
GRID = np.round(np.linspace(0.05, 1.0, 20), 2)  # the report's curve points


def confidence(probs: np.ndarray, score: str = "max_prob") -> np.ndarray:
    """Higher = more confident: the max class probability, or minus the entropy (nats)."""
    p = np.asarray(probs, dtype=np.float64)
    if score == "max_prob":
        return p.max(axis=-1)
    if score == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    raise ValueError(f"score: 'max_prob' or 'entropy', got {score!r}")


def expected_errors(conf: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """[..., n]: the expected number of errors among the i most confident images (i = 1..n),
    with ties in `conf` broken uniformly at random."""
    conf, wrong = np.atleast_2d(conf), np.atleast_2d(wrong).astype(np.float64)
    rows, n = conf.shape
    order = np.argsort(-conf, axis=1, kind="stable")
    c = np.take_along_axis(conf, order, 1)
    e = np.take_along_axis(wrong, order, 1)
    pos = np.broadcast_to(np.arange(n), (rows, n))
    first = np.ones((rows, n), dtype=bool)
    first[:, 1:] = c[:, 1:] != c[:, :-1]
    last = np.ones((rows, n), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos + 1, n)[:, ::-1], axis=1)[:, ::-1]
    cum = np.concatenate([np.zeros((rows, 1)), np.cumsum(e, axis=1)], axis=1)
    before = np.take_along_axis(cum, start, 1)
    group = np.take_along_axis(cum, end, 1) - before
    return before + (pos + 1 - start) * group / (end - start)


def risks(conf: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """[..., n]: the risk (error rate of the kept images) at coverage i/n, i = 1..n."""
    n = np.shape(conf)[-1]
    return expected_errors(conf, wrong) / np.arange(1, n + 1)


def aurc(conf: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Area under the risk-coverage curve (mean risk over the n coverages), per row."""
    return risks(conf, wrong).mean(axis=-1)


def optimal_aurc(n: int, errors: int | np.ndarray) -> np.ndarray:
    """AURC of a perfect ranking (every error after every correct image) of `errors` in n."""
    i = np.arange(1, n + 1)
    e = np.atleast_1d(np.asarray(errors, dtype=np.float64))[:, None]
    return (np.clip(i - n + e, 0, None) / i).mean(axis=-1)


def optimal_aurc_limit(error_rate: float) -> float:
    """The large-n limit of optimal_aurc: r + (1 - r) ln(1 - r)."""
    r = float(error_rate)
    return r + (1 - r) * math.log(1 - r) if r < 1 else 1.0


def kept(n: int, coverage: float) -> int:
    """Images kept at a coverage: at least that share (ceil), at least one."""
    return max(1, math.ceil(round(coverage * n, 9)))


def summary(conf: np.ndarray, wrong: np.ndarray, r: np.ndarray | None = None
            ) -> dict[str, np.ndarray]:
    """Per row: aurc, eaurc and accuracy_at_coverage_80 / _90 (accuracy of the kept images);
    `r`: the rows' risks when already computed."""
    wrong = np.atleast_2d(wrong).astype(np.float64)
    n = wrong.shape[1]
    r = risks(conf, wrong) if r is None else r
    area = r.mean(axis=1)
    out = {"aurc": area, "eaurc": area - optimal_aurc(n, wrong.sum(axis=1))}
    for c in COVERAGES:
        out[f"accuracy_at_coverage_{round(c * 100)}"] = 1 - r[:, kept(n, c) - 1]
    return out


def curve(conf: np.ndarray, wrong: np.ndarray, grid=GRID) -> np.ndarray:
    """[..., len(grid)]: the risk at each coverage of the grid."""
    n = np.shape(conf)[-1]
    return risks(conf, wrong)[..., [kept(n, c) - 1 for c in grid]]


def metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """What a cell logs: AURC, E-AURC and the accuracies at fixed coverage from the max
    probability, and AURC / E-AURC from the entropy as the alternative score."""
    probs = np.asarray(probs, dtype=np.float64)
    wrong = probs.argmax(axis=1) != np.asarray(y)
    out = {k: float(v[0]) for k, v in summary(confidence(probs), wrong).items()}
    ent = summary(confidence(probs, "entropy"), wrong)
    out |= {"aurc_entropy": float(ent["aurc"][0]), "eaurc_entropy": float(ent["eaurc"][0])}
    return out


def two_level(units: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_boot: int = 1000,
              seed: int = 0, grid=GRID) -> dict[str, dict]:
    """The report's seed-aware intervals for selective prediction: the summary figures and the
    risk at each coverage of `grid`, each with a 95% percentile interval over test images and
    runs resampled together (stats.two_level_bootstrap's design, for statistics that are not
    means of per-image values).

    `units`: one (files, confidence, wrong) per run. Where every run scored the same files (one
    fixed test set, several seeds) one image draw serves all runs, since an image that is hard
    is hard for every seed; otherwise (k-fold, hold-out) each run draws its own images. Runs are
    drawn with replacement; the point estimate is the mean over runs of each run's figure.
    """
    if not units:
        raise ValueError("two_level: no run to resample")
    rng = np.random.default_rng(seed)
    aligned = []
    reference = np.asarray(units[0][0])
    crossed = all(len(f) == len(reference) and set(f) == set(reference) for f, _, _ in units)
    for files, conf, wrong in units:
        order = np.argsort(np.asarray(files)) if crossed else np.arange(len(files))
        aligned.append((np.asarray(conf, dtype=np.float64)[order],
                        np.asarray(wrong, dtype=np.float64)[order]))
    shared = rng.integers(0, len(reference), size=(n_boot, len(reference))) if crossed else None

    def figures(conf, wrong) -> np.ndarray:  # [rows, summary keys + grid]
        r = risks(conf, wrong)  # ranked once for every figure
        cols = [kept(r.shape[1], c) - 1 for c in grid]
        return np.column_stack([*summary(conf, wrong, r).values(), r[:, cols]])

    keys = [*summary(np.zeros(2), np.zeros(2)).keys(), *(f"risk_at_{c:g}" for c in grid)]
    point = np.mean([figures(c[None], w[None])[0] for c, w in aligned], axis=0)
    per_unit = []
    for conf, wrong in aligned:
        idx = shared if crossed else rng.integers(0, len(conf), size=(n_boot, len(conf)))
        # in chunks of resamples: a full test set under every severity is ~6500 images a row
        per_unit.append(np.concatenate([figures(conf[rows], wrong[rows])
                                        for rows in np.array_split(idx, max(1, n_boot // 200))]))
    per_unit = np.stack(per_unit)  # [units, B, keys]
    picks = rng.integers(0, len(units), size=(n_boot, len(units)))
    samples = per_unit[picks, np.arange(n_boot)[:, None]].mean(axis=1)  # [B, keys]
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return {k: {"mean": float(point[i]), "ci95": [float(low[i]), float(high[i])]}
            for i, k in enumerate(keys)} | {"_design": {"runs": len(units), "crossed": crossed}}
