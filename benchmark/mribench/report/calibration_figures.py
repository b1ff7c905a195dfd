"""Figures of the report's calibration part (report/calibration.py): risk against coverage with
bands, and reliability diagrams before and after temperature scaling."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def risk_coverage_figure(curves: list[dict], subset: str) -> Figure:
    """Risk (error rate of the kept images) against coverage, one line per configuration, with
    its 95% band over test images and seeds."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, name in enumerate(dict.fromkeys(p["config"] for p in curves)):
        mine = sorted((p for p in curves if p["config"] == name), key=lambda p: p["coverage"])
        xs = [p["coverage"] for p in mine]
        colour = plt.get_cmap("tab10")(i % 10)
        ax.plot(xs, [p["risk"] for p in mine], "o-", color=colour, markersize=3, label=name)
        lows, highs = [p["ci95"][0] for p in mine], [p["ci95"][1] for p in mine]
        if not any(math.isnan(v) for v in lows + highs):
            ax.fill_between(xs, lows, highs, color=colour, alpha=0.18, linewidth=0)
    for c in (0.8, 0.9):
        ax.axvline(c, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage (share of images decided, most confident first)")
    ax.set_ylabel("risk (error rate of the decided images)")
    ax.set_title(f"risk-coverage on the {subset}, calibrated max probability: mean, "
                 "95% band over test images and seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def reliability_grid(tables: dict[str, dict[str, pd.DataFrame]], subset: str) -> Figure:
    """One panel per configuration: accuracy against mean confidence per bin, raw and
    calibrated, against the diagonal; point size grows with the bin's image count."""
    names = list(tables)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.5 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
        for kind, colour in (("raw", "tab:orange"), ("calibrated", "tab:blue")):
            t = tables[name][kind]
            used = t[t["count"] > 0]
            ece = float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum()
                        / max(t["count"].sum(), 1))
            ax.plot(used["confidence"], used["accuracy"], "-", color=colour, alpha=0.6)
            ax.scatter(used["confidence"], used["accuracy"], s=8 + 60 * used["count"]
                       / max(used["count"].max(), 1), color=colour,
                       label=f"{kind} (pooled ECE {ece:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("mean confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"reliability before and after temperature scaling ({subset})", fontsize=10)
    fig.tight_layout()
    return fig
