"""The report's figures, drawn from report_tables' data. Every function returns a Figure; the
caller saves it (PNG) and closes it."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

CLEAN, FULL, SEED = "tab:blue", "tab:orange", "black"


def _height(n: int) -> float:
    return 1.4 + 0.45 * n


def forest_figure(rows: list[dict]) -> Figure:
    """Accuracy per configuration: clean and full test, each with its 95% interval over test
    images and seeds; the seed-only interval as a black tick bar; published figures as stars."""
    fig, ax = plt.subplots(figsize=(7.5, _height(len(rows))))
    ys = np.arange(len(rows))[::-1]
    for y, row in zip(ys, rows):
        for key, colour, dy, name in (("test_clean_accuracy", CLEAN, 0.14, "clean test"),
                                      ("test_accuracy", FULL, -0.14, "full test")):
            if key not in row:
                continue
            low, high = row.get(f"{key}_ci95") or row.get(f"{key}_seed_ci95") or (None, None)
            if low is not None and not math.isnan(low):
                ax.plot([low, high], [y + dy] * 2, color=colour, linewidth=3, alpha=0.55,
                        solid_capstyle="butt")
            ax.plot(row[key], y + dy, "o", color=colour, label=f"{name}: mean, 95% CI "
                    "(images and seeds)")
            seed = row.get(f"{key}_seed_ci95")
            if key == "test_clean_accuracy" and seed and not math.isnan(seed[0]):
                ax.errorbar(row[key], y + dy + 0.1,
                            xerr=[[row[key] - seed[0]], [seed[1] - row[key]]], fmt="none",
                            ecolor=SEED, elinewidth=1, capsize=2,
                            label="clean test: t-interval over the runs alone (seeds; folds "
                            "for k-fold)")
        for key in (k for k in row if k.startswith("published_") and "accuracy" in k):
            ax.plot(row[key], y, "*", color="tab:red", markersize=10, label="published")
    ax.set_yticks(ys, [r["config"] for r in rows])
    ax.set_xlabel("test accuracy")
    ax.grid(axis="x", alpha=0.3)
    _dedupe_legend(ax, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2)
    fig.tight_layout()
    return fig


def cost_figure(rows: list[dict]) -> Figure:
    """Clean-test accuracy (95% CI) against training seconds per epoch (log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in rows:
        key = "test_clean_accuracy" if "test_clean_accuracy" in row else "test_accuracy"
        if row.get("seconds_per_epoch") is None or key not in row:
            continue
        x, y = row["seconds_per_epoch"], row[key]
        low, high = row.get(f"{key}_ci95") or row.get(f"{key}_seed_ci95") or (y, y)
        ax.errorbar(x, y, yerr=[[y - low], [high - y]], fmt="o", capsize=3)
        ax.annotate(row["config"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    low, high = ax.get_xlim()
    ax.xaxis.set_major_formatter(plain)  # 0.01, 0.1, 1 rather than 10^-2 ...
    # label the in-between ticks only when the axis spans about a decade or less
    ax.xaxis.set_minor_formatter(plain if high / low < 15 else FuncFormatter(lambda v, _: ""))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("seconds per training epoch (log scale; frozen = head on reused features)")
    ax.set_ylabel("clean test accuracy")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def leakage_figure(rows: list[dict]) -> Figure:
    """Full-test minus clean-test accuracy per configuration: what leaked copies add."""
    shown = [r for r in rows if "leakage_gap" in r]
    fig, ax = plt.subplots(figsize=(6.5, _height(len(shown))))
    ys = np.arange(len(shown))[::-1]
    gaps = [r["leakage_gap"] for r in shown]
    ax.barh(ys, gaps, color=["tab:red" if g > 0 else "tab:green" for g in gaps], alpha=0.7)
    for y, row in zip(ys, shown):
        leaked = row.get("leaked_test_images")
        note = f"{row['leakage_gap']:+.3f}" + (f"  ({leaked:.0f} leaked test images)" if leaked
                                              is not None else "")
        ax.annotate(note, (row["leakage_gap"], y), textcoords="offset points",
                    xytext=(4 if row["leakage_gap"] >= 0 else -4, 0), va="center",
                    ha="left" if row["leakage_gap"] >= 0 else "right", fontsize=8)
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(ys, [r["config"] for r in shown])
    ax.set_xlabel("accuracy: full test minus clean test")
    span = max([abs(g) for g in gaps] + [0.01])
    ax.set_xlim(-span * 2.2, span * 2.2)
    fig.tight_layout()
    return fig


def recall_figure(table: pd.DataFrame) -> Figure:
    """Per-class recall heat map: configurations x true classes."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], _height(len(table))))
    image = ax.imshow(table.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if not math.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9,
                    color="black" if value > 0.6 else "white")
    ax.set_xticks(range(table.shape[1]), list(table.columns), rotation=20, ha="right")
    ax.set_yticks(range(len(table)), list(table.index))
    ax.set_xlabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="recall (mean over runs)")
    fig.tight_layout()
    return fig


def pairwise_figure(pairs: list[dict], names: list[str], subset: str = "clean") -> Figure:
    """Accuracy difference row minus column (colour) with its Holm-adjusted p-value."""
    k = len(names)
    diff = np.full((k, k), np.nan)
    text = [["" for _ in range(k)] for _ in range(k)]
    index = {n: i for i, n in enumerate(names)}
    for p in pairs:
        if "difference" not in p or p["a"] not in index or p["b"] not in index:
            continue
        i, j = index[p["a"]], index[p["b"]]
        for r, c, sign in ((i, j, 1), (j, i, -1)):
            diff[r, c] = sign * p["difference"]
            text[r][c] = f"{sign * p['difference']:+.3f}\np={p.get('p_holm', p['p_value']):.2g}"
    span = np.nanmax(np.abs(diff)) if np.isfinite(diff).any() else 0.1
    fig, ax = plt.subplots(figsize=(2.2 + 1.5 * k, 1.6 + 1.1 * k))
    image = ax.imshow(diff, cmap="RdBu", vmin=-span, vmax=span)
    for i in range(k):
        for j in range(k):
            dark = np.isfinite(diff[i, j]) and abs(diff[i, j]) > 0.6 * span  # deep colours
            ax.text(j, i, text[i][j] or ("-" if i == j else "n/a"), ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(k), names, rotation=20, ha="right")
    ax.set_yticks(range(k), names)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="accuracy: row minus column")
    ax.set_title(f"{subset} test: accuracy difference, Holm-adjusted p", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_grid(tables: dict[str, pd.DataFrame]) -> Figure:
    """Row-normalised confusion matrices (counts pooled over runs), one panel per configuration."""
    n = len(tables)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    side = 1.2 + 0.55 * max(len(t) for t in tables.values())  # class counts may differ
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 0.6, side * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, counts) in zip(axes.flat, tables.items()):
        ax.axis("on")
        c, k = counts.to_numpy(dtype=float), len(counts)
        share = np.divide(c, c.sum(1, keepdims=True), out=np.zeros_like(c),
                          where=c.sum(1, keepdims=True) > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(share):
            ax.text(j, i, f"{value:.2f}\n{int(c[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.5 else "black")
        ax.set_xticks(range(k), list(counts.columns), rotation=35, ha="right", fontsize=7)
        ax.set_yticks(range(k), list(counts.index), fontsize=7)
        ax.set_title(f"{name} (n={int(c.sum())})", fontsize=9)
    fig.supxlabel("predicted class", fontsize=9)
    fig.supylabel("true class", fontsize=9)
    fig.tight_layout()
    return fig


def maps_grid(maps: dict[str, dict[str, np.ndarray]], method: str) -> Figure:
    """One method's maps on the same test images, one row per configuration. maps[config] holds
    the method's maps [n, H, W] and optionally 'images' [n, H, W(, 3)], 'masks' (brain, bool),
    'labels'/'preds' (class indices) and 'classes'. Signed maps (LIME's superpixel weights) use a
    green (for the prediction) / red (against) scale centred on 0 and leave weight-0 pixels (the
    background, not a feature) clear; CAMs use jet. The brain mask is outlined in cyan."""
    names = [n for n in maps if method in maps[n]]
    n_img = max(len(maps[n][method]) for n in names)
    signed = any(float(np.min(maps[n][method])) < 0 for n in names)
    fig, axes = plt.subplots(len(names), n_img, figsize=(1.9 * n_img + 1.2, 2.1 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        entry = maps[name]
        for c in range(n_img):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(entry[method]):
                ax.axis("off")
                continue
            if "images" in entry:
                ax.imshow(entry["images"][c], cmap="gray")
            _draw_map(ax, entry[method][c], signed, overlay="images" in entry)
            if "masks" in entry and entry["masks"][c].any():
                ax.contour(entry["masks"][c], levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(_caption(entry, c, with_truth=r == 0), fontsize=7,
                         color="black" if _correct(entry, c) else "tab:red")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    how = ("green supports the prediction, red opposes it, clear = not a feature" if signed
           else "red = most important")
    fig.suptitle(f"{method}: the same test images in every configuration ({how}; "
                 "cyan = brain mask)", fontsize=9)
    fig.tight_layout()
    return fig


def _draw_map(ax, m: np.ndarray, signed: bool, overlay: bool) -> None:
    if signed:
        scale = float(np.abs(m).max()) or 1.0
        ax.imshow(np.ma.masked_equal(m, 0), cmap="RdYlGn", vmin=-scale, vmax=scale,
                  alpha=0.6 if overlay else 1.0)
    else:
        ax.imshow(m, cmap="jet", alpha=0.45 if overlay else 1.0)


def _caption(entry: dict, i: int, with_truth: bool) -> str:
    if "classes" not in entry or "preds" not in entry:
        return ""
    classes = [str(c) for c in entry["classes"]]
    pred = f"pred: {classes[int(entry['preds'][i])]}"
    if with_truth and "labels" in entry:
        return f"true: {classes[int(entry['labels'][i])]}\n{pred}"
    return pred


def _correct(entry: dict, i: int) -> bool:
    if "labels" not in entry or "preds" not in entry:
        return True
    return int(entry["labels"][i]) == int(entry["preds"][i])


def _dedupe_legend(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen = {}
    for h, label in zip(handles, labels):
        seen.setdefault(label, h)
    ax.legend(seen.values(), seen.keys(), fontsize=7, frameon=False, **kwargs)
