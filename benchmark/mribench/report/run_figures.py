"""Figures for a run: confusion matrices, learning curves and explanation grids.

Matplotlib runs headless (Agg); every function returns a Figure and never shows it. The caller
logs it and then closes it (plt.close(fig)) so long suites do not accumulate figures.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc")


def confusion_figure(cm: pd.DataFrame, normalize: bool) -> Figure:
    """Confusion matrix heat map; row-normalised (recall per true class) when normalize."""
    if cm.shape[0] != cm.shape[1] or list(cm.index) != list(cm.columns):
        raise ValueError(f"confusion matrix must be square with the same class names on both "
                         f"axes, got index {list(cm.index)} and columns {list(cm.columns)}")
    counts = cm.to_numpy(dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize \
        else counts
    k = len(cm)
    size = max(4.0, 1.0 + 0.9 * k)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = (1 if normalize else max(values.max(), 1)) / 2
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if values[i, j] > threshold else "black")
    ax.set_xticks(range(k), [str(c) for c in cm.columns], rotation=35, ha="right")
    ax.set_yticks(range(k), [str(c) for c in cm.index])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(counts.sum())
    ax.set_title(("confusion matrix, row-normalised" if normalize else "confusion matrix, counts")
                 + f" (n={total})")
    fig.tight_layout()
    return fig


def learning_curves_figure(history: list[dict]) -> Figure:
    """Loss and accuracy per epoch, train and validation, side by side."""
    if not history:
        raise ValueError("learning curves: the history has no epochs")
    for row in history:
        missing = [key for key in HISTORY_KEYS if key not in row]
        if missing:
            raise ValueError(f"learning curves: epoch row {row.get('epoch', '?')} lacks {missing}")
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((loss_ax, "loss", "loss"), (acc_ax, "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ax.plot(epochs, [row[f"{split}_{metric}"] for row in history], style, markersize=3,
                    label="validation" if split == "val" else "train")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    # the engine restores the first epoch with the lowest validation loss
    best = min(history, key=lambda row: row["val_loss"])
    for ax in (loss_ax, acc_ax):
        ax.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1,
                   label=f"best val loss (epoch {best['epoch']})")
        ax.legend(fontsize=8)
    acc_ax.set_ylim(0, 1.02)
    if len(epochs) < 15:
        for ax in (loss_ax, acc_ax):
            ax.set_xticks(epochs)
    fig.tight_layout()
    return fig


def explanation_grid(images: list[np.ndarray], overlays: list[np.ndarray], titles: list[str],
                     method: str, legend: str = "", correct: list[bool] | None = None,
                     notes: list[str] | None = None,
                     outlines: list[np.ndarray] | np.ndarray | None = None) -> Figure:
    """Each image above its explanation overlay, up to four images per row, titled per image.

    images and overlays are [H, W, 3] floats in [0, 1] (or [H, W] grey), titles one per image;
    titles of misclassified images (correct[i] False) are drawn in red; notes[i], when not
    empty, is written across the overlay (e.g. "empty map"); outlines[i], a boolean mask (the
    brain), is drawn as a thin cyan line on both the image and its overlay.
    """
    n = len(images)
    if not n or len(overlays) != n or len(titles) != n:
        raise ValueError(f"explanation grid: {n} images, {len(overlays)} overlays, "
                         f"{len(titles)} titles; need the same positive number")
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.6 * cols, 5.9 * rows + 0.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = 2 * (i // cols), i % cols
        axes[r, c].imshow(images[i], cmap="gray" if images[i].ndim == 2 else None)
        wrong = correct is not None and not correct[i]
        axes[r, c].set_title(titles[i], fontsize=8, color="firebrick" if wrong else "black")
        axes[r + 1, c].imshow(overlays[i])
        if outlines is not None and 0 < np.mean(outlines[i]) < 1:
            for ax in (axes[r, c], axes[r + 1, c]):
                ax.contour(np.asarray(outlines[i], dtype=float), levels=[0.5], colors="cyan",
                           linewidths=0.6)
        if notes and notes[i]:
            axes[r + 1, c].text(0.5, 0.5, notes[i], transform=axes[r + 1, c].transAxes,
                                ha="center", va="center", fontsize=8, color="white",
                                bbox=dict(facecolor="black", alpha=0.6, edgecolor="none"))
    legend = textwrap.fill(legend, width=34 * cols)  # ~34 characters per 2.6-inch column
    fig.suptitle(f"{method}" + (f"\n{legend}" if legend else ""), fontsize=10)
    fig.tight_layout(h_pad=1.2)  # room for the next pair's titles under an overlay
    return fig


def reliability_figure(table: pd.DataFrame, ece: float, title: str = "") -> Figure:
    """Reliability diagram from metrics.reliability_table: accuracy per confidence bin against
    the diagonal of perfect calibration, with the image count per bin underneath."""
    used = table[table["count"] > 0]
    width = float((table["bin_high"] - table["bin_low"]).iloc[0])
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(4.6, 5.4), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1, label="perfect calibration")
    ax.bar(used["bin_low"], used["accuracy"], width=width, align="edge", color="tab:blue",
           alpha=0.75, edgecolor="white", label="accuracy in bin")
    ax.plot(used["confidence"], used["accuracy"], "o", color="black", markersize=3,
            label="(mean confidence, accuracy)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title((title + "\n" if title else "") + f"reliability, ECE = {ece:.3f}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    counts.bar(table["bin_low"], table["count"], width=width, align="edge", color="grey",
               edgecolor="white")
    counts.set_xlim(0, 1)
    counts.set_xlabel("confidence of the predicted class")
    counts.set_ylabel("images")
    fig.tight_layout()
    return fig
