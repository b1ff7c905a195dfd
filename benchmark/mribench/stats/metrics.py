"""Test-set metrics, classification report, confusion matrix and the predictions table.

Everything is computed by scikit-learn from integer labels and class probabilities. Metric names
are flat and MLflow-safe with no split prefix: the caller adds "test_" or "test_clean_".
"""
from __future__ import annotations

import re
import resource
import sys
import warnings

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def safe_name(name: str) -> str:
    """A class name usable inside an MLflow metric key (letters, digits, _ - . only)."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name)).strip("_") or "class"


def _check(y_true: np.ndarray, classes: list[str], probs: np.ndarray | None = None,
           y_pred: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    k = len(classes)
    if k < 2:
        raise ValueError(f"classes: need at least 2 class names, got {classes!r}")
    if len({safe_name(c) for c in classes}) != k:
        raise ValueError(f"classes: names collide once made metric-safe: {classes!r}")
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true: expected a non-empty 1-D array of labels, "
                         f"got shape {y_true.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y is not None and (np.asarray(y).min() < 0 or np.asarray(y).max() >= k):
            raise ValueError(f"{name}: labels must lie in [0, {k - 1}] for classes {classes!r}, "
                             f"got range [{np.min(y)}, {np.max(y)}]")
    if probs is not None:
        if probs.shape != (len(y_true), k):
            raise ValueError(f"probs: expected shape {(len(y_true), k)} (images x classes), "
                             f"got {probs.shape}")
        if not np.all(np.isfinite(probs)) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("probs: each row must be finite class probabilities summing to 1 "
                             "(apply softmax to the logits first)")
    return y_true.astype(int), k


def compute(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """All test metrics for one run, from true labels [N] and class probabilities [N, K].

    Values that are undefined on this subset (recall and F1 of a class it has no image of) are
    NaN: pass the result through `defined` before logging, so they are left out, not zero."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true, k = _check(y_true, classes, probs)
    y_pred = probs.argmax(axis=1)
    labels = list(range(k))
    out: dict[str, float] = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
        "kappa": skm.cohen_kappa_score(y_true, y_pred, labels=labels),
        "mcc": skm.matthews_corrcoef(y_true, y_pred),
        "log_loss": skm.log_loss(y_true, probs, labels=labels),
        "ece": expected_calibration_error(y_true, probs),
    }
    # A class with no image in the subset has no recall and no F1 (undefined, not 0): its
    # per-class values are NaN and the macro averages run over the classes present only,
    # with their count logged as macro_classes.
    support = np.bincount(y_true, minlength=k)
    present = [c for c in labels if support[c] > 0]
    for avg, over in (("macro", present), ("weighted", labels), ("micro", labels)):
        # micro P = R = F1 = accuracy (Study A)
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=over, average=avg, zero_division=0)
        out.update({f"precision_{avg}": p, f"recall_{avg}": r, f"f1_{avg}": f})
    out["macro_classes"] = len(present)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    predicted = np.bincount(y_pred, minlength=k)
    for i, name in enumerate(map(safe_name, classes)):
        absent = s[i] == 0
        out.update({f"precision_{name}": np.nan if absent and predicted[i] == 0 else p[i],
                    f"recall_{name}": np.nan if absent else r[i],
                    f"f1_{name}": np.nan if absent else f[i], f"support_{name}": s[i]})
    out.update(_auc(y_true, probs, classes))
    return {key: float(value) for key, value in out.items()}


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present. scikit-learn warns when a prediction names a class
    with no image; the composition warning (stats/composition.py) says so once, not per run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return skm.balanced_accuracy_score(y_true, y_pred)


def defined(values: dict[str, float]) -> dict[str, float]:
    """The values that are defined (not NaN): what may be logged or averaged."""
    return {k: v for k, v in values.items() if not (isinstance(v, float) and np.isnan(v))}


ECE_BINS = 15


def reliability_table(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Top-label reliability: images binned by the confidence of their predicted class (equal-
    width bins over [0, 1]), with each bin's count, mean confidence and accuracy.

    Hand-written: scikit-learn's calibration_curve is for one binary score, not the top label of
    a multi-class model, and carries no counts."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; a confidence of exactly 0 joins bin 0
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / count
        acc = np.bincount(which, weights=correct.astype(float), minlength=bins) / count
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
                         "confidence": conf, "accuracy": acc})


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): the count-weighted mean |accuracy - confidence| over the bins."""
    table = reliability_table(y_true, probs, bins)
    used = table[table["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum()
                 / table["count"].sum())


def _auc(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Binary AUC, or one-vs-rest AUC per class plus their macro mean.

    AUC is undefined for a class with no positive (or no negative) test image; such keys are
    left out rather than filled with a made-up value, and so is the macro mean.
    """
    present = [c for c in range(len(classes)) if 0 < np.sum(y_true == c) < len(y_true)]
    if len(classes) == 2:
        return {"roc_auc": skm.roc_auc_score(y_true, probs[:, 1])} if len(present) == 2 else {}
    per_class = {f"roc_auc_{safe_name(classes[c])}": skm.roc_auc_score(y_true == c, probs[:, c])
                 for c in present}
    if len(present) == len(classes):
        per_class["roc_auc_macro"] = float(np.mean(list(per_class.values())))
    return per_class


def report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[dict, str]:
    """scikit-learn's classification report, as a JSON-able dict and as text. A class with no
    image in the subset has recall and F1 null ("n/a" in the text), and the macro average runs
    over the classes present (its `classes` entry says how many)."""
    y_pred = np.asarray(y_pred).astype(int)
    y_true, k = _check(y_true, classes, y_pred=y_pred)
    kwargs = dict(labels=list(range(k)), target_names=list(classes), zero_division=0, digits=4)
    as_dict = _plain(skm.classification_report(y_true, y_pred, output_dict=True, **kwargs))
    support = np.bincount(y_true, minlength=k)
    present = [c for c in range(k) if support[c] > 0]
    if len(present) < k:
        predicted = np.bincount(y_pred, minlength=k)
        for c in range(k):
            if support[c] == 0:
                row = as_dict[classes[c]]
                row.update({"recall": None, "f1-score": None,
                            **({"precision": None} if predicted[c] == 0 else {})})
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=present, average="macro", zero_division=0)
        as_dict["macro avg"].update({"precision": float(p), "recall": float(r),
                                     "f1-score": float(f)})
    as_dict["macro avg"]["classes"] = len(present)
    return as_dict, _report_text(as_dict, classes)


def _report_text(as_dict: dict, classes: list[str]) -> str:
    """The report as a fixed-width table, n/a where a value is undefined."""
    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"
    width = max(len(c) for c in [*classes, "weighted avg"])
    lines = [f"{'':>{width}} {'precision':>10} {'recall':>10} {'f1-score':>10} {'support':>8}", ""]
    for name in [*classes, "macro avg", "weighted avg"]:
        row = as_dict[name]
        if name == "macro avg":
            lines.append("")
        lines.append(f"{name:>{width}} {fmt(row['precision']):>10} {fmt(row['recall']):>10} "
                     f"{fmt(row['f1-score']):>10} {int(row['support']):>8}")
    total = int(as_dict["weighted avg"]["support"])
    lines.insert(len(classes) + 2, f"{'accuracy':>{width}} {'':>10} {'':>10} "
                 f"{fmt(as_dict['accuracy']):>10} {total:>8}")
    macro = as_dict["macro avg"]["classes"]
    if macro < len(classes):
        lines.append(f"(macro avg over the {macro} classes present of {len(classes)})")
    return "\n".join(lines) + "\n"


def _plain(value):
    """numpy scalars to Python numbers so json.dumps accepts the report."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    return value.item() if isinstance(value, np.generic) else value


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Counts; rows are true classes, columns predicted classes, both named."""
    y_pred = np.asarray(y_pred).astype(int)
    y_true, k = _check(y_true, classes, y_pred=y_pred)
    counts = skm.confusion_matrix(y_true, y_pred, labels=list(range(k)))
    return pd.DataFrame(counts, index=pd.Index(classes, name="true"),
                        columns=pd.Index(classes, name="predicted"))


def predictions_frame(paths: list[str], y_true: np.ndarray, probs: np.ndarray,
                      classes: list[str], clean: list[bool] | None = None,
                      groups: list[str] | None = None) -> pd.DataFrame:
    """One row per test image: file, true and predicted class names, every class probability,
    (when the dataset was deduplicated) whether the image belongs to the clean test subset, and
    (when given) its duplicate group.

    Keyed by file so two runs on the same split can be paired (see compare.py).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true, _ = _check(y_true, classes, probs)
    if len(paths) != len(y_true):
        raise ValueError(f"paths: {len(paths)} files for {len(y_true)} labels")
    names = np.asarray(classes, dtype=object)
    frame = pd.DataFrame({"file": [str(p) for p in paths], "true": names[y_true],
                          "pred": names[probs.argmax(axis=1)]})
    if clean is not None:
        if len(clean) != len(y_true):
            raise ValueError(f"clean: {len(clean)} flags for {len(y_true)} images")
        frame["clean"] = [bool(c) for c in clean]
    if groups is not None:  # duplicate group: copies of one image share it (cluster bootstrap)
        if len(groups) != len(y_true):
            raise ValueError(f"groups: {len(groups)} group ids for {len(y_true)} images")
        frame["group"] = [str(g) for g in groups]
    for i, name in enumerate(classes):
        frame[f"prob_{safe_name(name)}"] = probs[:, i]
    return frame



def peak_memory(device: str = "cpu") -> dict[str, float]:
    """Peak process RSS in MiB (and peak CUDA memory allocated when running on a GPU)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": rss / (1024 * 1024 if sys.platform == "darwin" else 1024)}
    if str(device).startswith("cuda"):
        import torch

        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
