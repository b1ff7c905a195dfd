"""What a scored subset holds: images per class, the baselines an accuracy must beat, and a
warning when a class is missing or nearly so.

An accuracy means little without its subset's class mix: on a test subset of 80 glioma, 6
meningioma and 49 pituitary images, predicting "glioma" for every image scores 0.593. Two
baselines are given beside every accuracy:
- majority: the accuracy of always predicting the subset's most frequent class (max n_c / n);
- chance: the expected accuracy of guessing at random with the subset's own class frequencies
  (sum of (n_c / n)^2), the accuracy of a stratified random classifier.
Both score 1 / (classes present) in balanced accuracy.
"""
from __future__ import annotations

import numpy as np

# a subset holding fewer images than this of some class gets a warning: its recall for that
# class moves by 1/n per image (0.2 at 5 images) and its interval is wide
FEW_IMAGES = 10


def counts(y: np.ndarray, classes: list[str]) -> dict[str, int]:
    """Images per class, every class named (0 where the subset has none)."""
    found = np.bincount(np.asarray(y, dtype=int), minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, found)}


def baselines(per_class: dict[str, int]) -> dict[str, float]:
    """Accuracy of the majority-class and stratified-chance classifiers on this mix."""
    n = np.array(list(per_class.values()), dtype=np.float64)
    if n.sum() <= 0:
        raise ValueError("baselines: the subset holds no image")
    share = n / n.sum()
    return {"majority_baseline": float(share.max()), "chance_baseline": float((share ** 2).sum())}


def warning(subset: str, per_class: dict[str, int], few: int = FEW_IMAGES) -> str | None:
    """One line when the subset lacks a class or holds fewer than `few` images of one."""
    absent = [c for c, n in per_class.items() if n == 0]
    scarce = [f"{c} {n}" for c, n in per_class.items() if 0 < n < few]
    if not absent and not scarce:
        return None
    said = []
    if absent:
        said.append(f"no image of {', '.join(absent)} (recall/F1 n/a, left out of macro "
                    "averages)")
    if scarce:
        said.append(f"fewer than {few} images of {', '.join(scarce)}")
    return f"{subset}: {'; '.join(said)}; read its scores beside its class mix and baselines"


def mix(per_class: dict[str, int]) -> str:
    """`glioma 80, meningioma 6, no_tumor 0, pituitary 49`."""
    return ", ".join(f"{c} {n}" for c, n in per_class.items())


def logged(prefix: str, per_class: dict[str, int], groups: int | None = None) -> dict[str, float]:
    """Flat MLflow metrics of a subset's composition: {prefix}_support_{class} is logged by
    metrics.compute already; the baselines and the duplicate-group count are added here."""
    out = {f"{prefix}_{k}": v for k, v in baselines(per_class).items()}
    if groups is not None:
        out[f"{prefix}_groups"] = float(groups)
    return out
