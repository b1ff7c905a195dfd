"""Shortcut audit: how well properties that are not anatomy predict the label.

Given each image's properties (data/properties.py), its class and its side (train/val count as
the training side, test as the test side, `all` when the publisher made no split), this gives
  - the distribution of each property per class and side ("glioma: 512x512 100 % in train"),
  - a metadata-only baseline: a scikit-learn random forest on the file and intensity
    properties, cross-validated on the training side, then fitted there and scored on the test
    side, printed beside chance (the accuracy of always answering the training side's most
    common class, and 1/k for balanced accuracy),
  - within-class train/test separations: a property whose distribution in a class differs
    between the two sides (total variation distance for categories, Kolmogorov-Smirnov
    statistic for numbers),
  - one verdict line when the baseline beats chance by MARGIN or more in balanced accuracy
    and the lower end of its 95% Wilson interval on accuracy clears the majority share (so a
    small set's noise does not cry wolf), or when a property separates train from test within
    a class by SEPARATES or more.
The name pattern and the source are shown but never used by the classifier nor judged: names
often spell the label or the split (`Tr-gl_N.jpg`, `Y1.jpg`), which no model sees.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.stats import ks_2samp
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from mribench.stats.intervals import wilson

MARGIN = 0.10  # balanced accuracy above 1/k that makes the verdict a warning
SEPARATES = 0.5  # TV distance / KS statistic between train and test within a class
MIN_SIDE = 10  # images on each side of a class before a separation is judged
CATEGORICAL = ("size", "format", "mode", "jpeg_quality", "source", "name_pattern")
JUDGED_CATEGORICAL = ("size", "format", "mode", "jpeg_quality")
NUMERIC = ("width", "height", "aspect", "file_kb", "bytes_per_pixel", "bit_depth",
           "jpeg_quality", "frame", "mean", "std", "p1", "p5", "p50", "p95", "p99", "background")
SHOWN_NUMERIC = ("file_kb", "jpeg_quality", "frame", "mean", "p50", "p99", "background")
TREES = 200


def _side(split: str) -> str:
    return {"train": "train", "val": "train", "test": "test"}.get(split, "all")


def features(rows: list[dict]) -> tuple[np.ndarray, list[str]]:
    """The classifier's input: numeric properties (missing = -1) and a one-hot file format."""
    formats = sorted({r["format"] for r in rows})
    names = list(NUMERIC) + [f"format={f}" for f in formats]
    x = np.array([[-1.0 if r.get(k) is None else float(r[k]) for k in NUMERIC]
                  + [float(r["format"] == f) for f in formats] for r in rows])
    return x, names


def _model(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=TREES, min_samples_leaf=2, random_state=seed,
                                  n_jobs=1, class_weight="balanced")


def _scores(y_true, y_pred, majority: str) -> dict:
    n, correct = len(y_true), int((np.asarray(y_true) == np.asarray(y_pred)).sum())
    low, high = wilson(correct, n)
    return {"n": n, "accuracy": correct / n, "accuracy_ci95": [low, high],
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "chance_accuracy": float(np.mean(np.asarray(y_true) == majority))}


def baseline(rows: list[dict], labels: list[str], sides: list[str], seed: int = 0,
             clean: list[bool] | None = None, cross_validate: bool = True) -> dict:
    """Cross-validated accuracy on the training side and accuracy on the test side of the
    metadata-only classifier; `clean` flags the test images that form the clean subset (a
    cell's preparation skips the cross-validation: it scores its own test split)."""
    x, names = features(rows)
    y = np.asarray(labels)
    train = np.array([_side(s) in ("train", "all") for s in sides])
    test = np.array([_side(s) == "test" for s in sides])
    classes = sorted(set(labels))
    counts = Counter(y[train].tolist())
    majority = counts.most_common(1)[0][0]
    out: dict = {"classes": len(classes), "chance_balanced_accuracy": 1 / len(classes),
                 "features": names, "trees": TREES}
    folds = min(5, min(counts.values()))
    if cross_validate and folds >= 2 and len(counts) == len(classes):
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        pred = cross_val_predict(_model(seed), x[train], y[train], cv=cv)
        out["cv"] = {"folds": folds, **_scores(y[train], pred, majority)}
    if test.any() and len(counts) >= 2:
        model = _model(seed).fit(x[train], y[train])
        pred = model.predict(x[test])
        out["test"] = _scores(y[test], pred, majority)
        if clean is not None:
            keep = np.asarray(clean, dtype=bool)[test]
            if keep.any():
                out["test_clean"] = _scores(y[test][keep], pred[keep], majority)
        order = np.argsort(model.feature_importances_)[::-1][:5]
        out["top_properties"] = [names[i] for i in order]
    out["judged_on"] = "test" if "test" in out else "cv" if "cv" in out else None
    return out


def beats_chance(scores: dict, classes: int) -> bool:
    return (scores["balanced_accuracy"] >= 1 / classes + MARGIN
            and scores["accuracy_ci95"][0] > scores["chance_accuracy"])


def _share(values: list) -> str:
    counts = Counter("-" if v is None else str(v) for v in values)
    top = counts.most_common(3)
    text = ", ".join(f"{v} {100 * c / len(values):.0f} %" for v, c in top)
    rest = len(values) - sum(c for _, c in top)
    return text + (f", {len(counts) - 3} others {100 * rest / len(values):.0f} %" if rest else "")


def distributions(rows: list[dict], labels: list[str], sides: list[str]) -> list[dict]:
    """One row per categorical property, class and side: its most common values with shares."""
    out = []
    groups = _by_class_side(labels, sides)
    for prop in CATEGORICAL:
        if all(prop not in r for r in rows):
            continue
        for (cls, side), idx in groups.items():
            out.append({"property": prop, "class": cls, "side": side, "n": len(idx),
                        "distribution": _share([rows[i].get(prop) for i in idx])})
    return out


def numeric_summary(rows: list[dict], labels: list[str], sides: list[str]) -> list[dict]:
    """One row per class and side: the median [10th-90th percentile] of numeric properties."""
    out = []
    for (cls, side), idx in _by_class_side(labels, sides).items():
        row = {"class": cls, "side": side, "n": len(idx)}
        for prop in SHOWN_NUMERIC:
            values = np.array([rows[i][prop] for i in idx if rows[i].get(prop) is not None], float)
            row[prop] = ("-" if not len(values) else
                         "{:.4g} [{:.4g}-{:.4g}]".format(*np.percentile(values, [50, 10, 90])))
        out.append(row)
    return out


def _by_class_side(labels: list[str], sides: list[str]) -> dict[tuple[str, str], list[int]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (cls, split) in enumerate(zip(labels, sides)):
        groups.setdefault((cls, _side(split)), []).append(i)
    return dict(sorted(groups.items()))


def separations(rows: list[dict], labels: list[str], sides: list[str]) -> list[dict]:
    """Per class and property, how far apart its train and test distributions are, largest
    first; empty without a test side."""
    groups = _by_class_side(labels, sides)
    out = []
    for cls in sorted(set(labels)):
        a, b = groups.get((cls, "train"), []), groups.get((cls, "test"), [])
        if not a or not b:
            continue
        for prop in JUDGED_CATEGORICAL:
            ta = Counter(str(rows[i].get(prop)) for i in a)
            tb = Counter(str(rows[i].get(prop)) for i in b)
            tv = 0.5 * sum(abs(ta[k] / len(a) - tb[k] / len(b)) for k in set(ta) | set(tb))
            mode = ta.most_common(1)[0][0]
            out.append({"class": cls, "property": prop, "n_train": len(a), "n_test": len(b),
                        "distance": round(tv, 3), "measure": "total variation",
                        "detail": f"{mode}: {100 * ta[mode] / len(a):.0f} % in train, "
                                  f"{100 * tb[mode] / len(b):.0f} % in test"})
        for prop in NUMERIC:
            if prop in JUDGED_CATEGORICAL:
                continue
            va = [rows[i][prop] for i in a if rows[i].get(prop) is not None]
            vb = [rows[i][prop] for i in b if rows[i].get(prop) is not None]
            if len(va) < 2 or len(vb) < 2:
                continue
            stat = float(ks_2samp(va, vb).statistic)
            out.append({"class": cls, "property": prop, "n_train": len(a), "n_test": len(b),
                        "distance": round(stat, 3), "measure": "Kolmogorov-Smirnov",
                        "detail": f"median {np.median(va):.4g} in train, {np.median(vb):.4g} in test"})
    return sorted(out, key=lambda r: -r["distance"])


def verdict(base: dict, seps: list[dict], name: str) -> str | None:
    """The one warning line, or None when neither the baseline nor a separation says so."""
    reasons = []
    judged = base.get(base.get("judged_on") or "", None)
    if judged and beats_chance(judged, base["classes"]):
        where = "on the test side" if base["judged_on"] == "test" else "cross-validated"
        reasons.append(f"file/intensity properties alone reach balanced accuracy "
                       f"{judged['balanced_accuracy']:.3f} {where} (chance {1 / base['classes']:.3f}; "
                       f"accuracy {judged['accuracy']:.3f} vs {judged['chance_accuracy']:.3f} "
                       f"for the majority class)")
    split = [s for s in seps if s["distance"] >= SEPARATES
             and min(s["n_train"], s["n_test"]) >= MIN_SIDE]
    if split:
        shown = "; ".join(f"{s['class']} {s['property']} ({s['detail']}, {s['distance']:.2f})"
                          for s in split[:3])
        reasons.append(f"{len(split)} property/class pair(s) separate train from test, e.g. "
                       + shown)
    if not reasons:
        return None
    return f"shortcut audit of {name}: " + "; ".join(reasons) + \
        " - a model may learn the source rather than the anatomy (docs: data-and-weights.md#shortcut-audit)"


def audit(rows: list[dict], labels: list[str], sides: list[str], name: str, seed: int = 0,
          clean: list[bool] | None = None, cross_validate: bool = True) -> dict:
    """Everything above for one dataset (or one cell's split)."""
    base = baseline(rows, labels, sides, seed, clean, cross_validate)
    seps = separations(rows, labels, sides)
    return {"files": len(rows), "baseline": base, "separations": seps,
            "distributions": distributions(rows, labels, sides),
            "numeric": numeric_summary(rows, labels, sides),
            "warning": verdict(base, seps, name), "margin": MARGIN, "separates": SEPARATES}
