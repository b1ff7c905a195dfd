"""Statistics across seeds/folds, and a paired significance test between two models."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps


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


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test on paired per-image correctness of models A and B.

    Only discordant images count: a_only (A right, B wrong) and b_only. Under the null hypothesis
    (equal error rates) a_only ~ Binomial(a_only + b_only, 1/2); the p-value is two-sided.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"mcnemar: need two equal-length, non-empty 1-D arrays, "
                         f"got shapes {a.shape} and {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(sps.binomtest(a_only, discordant, 0.5).pvalue)
    return {"n": int(a.size), "accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()),
            "both_correct": int(np.sum(a & b)), "a_only": a_only, "b_only": b_only,
            "both_wrong": int(np.sum(~a & ~b)), "p_value": p}


def mcnemar_frames(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> dict:
    """McNemar between two predictions tables (metrics.predictions_frame), paired by file."""
    for name, frame in (("frame_a", frame_a), ("frame_b", frame_b)):
        missing = {"file", "true", "pred"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name}: predictions table lacks columns {sorted(missing)}")
        duplicated = frame["file"][frame["file"].duplicated()]
        if len(duplicated):
            raise ValueError(f"{name}: duplicate files, e.g. {duplicated.iloc[0]}")
    merged = frame_a.merge(frame_b, on="file", suffixes=("_a", "_b"), how="outer", indicator=True)
    unpaired = merged[merged["_merge"] != "both"]
    if len(unpaired):
        raise ValueError(f"predictions tables cover different images ({len(unpaired)} unpaired, "
                         f"e.g. {unpaired['file'].iloc[0]}): compare runs on the same split only")
    if (merged["true_a"] != merged["true_b"]).any():
        raise ValueError("predictions tables disagree on true labels for the same files")
    return mcnemar(merged["pred_a"] == merged["true_a"], merged["pred_b"] == merged["true_b"])
