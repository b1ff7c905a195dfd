"""The curve of one axis (report/curves.py's points): accuracy against the axis value, one line
per configuration, its 95% interval (test images and seeds) as a band. Training-set size on a
log x-axis: learning curves bend on it, and the sizes asked are roughly geometric."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter, NullLocator  # noqa: E402

from mribench.report.curves import DATA_SIZE  # noqa: E402


def curve_figure(points: list[dict], axis: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    lines = sorted({p["line"] for p in points})
    for i, line in enumerate(lines):
        mine = sorted((p for p in points if p["line"] == line), key=lambda p: p["x"])
        xs = [p["x"] for p in mine]
        colour = plt.get_cmap("tab10")(i % 10)
        ax.plot(xs, [p["accuracy"] for p in mine], "o-", color=colour, label=line)
        lows, highs = [p["ci95_low"] for p in mine], [p["ci95_high"] for p in mine]
        if not any(math.isnan(v) for v in lows + highs):
            ax.fill_between(xs, lows, highs, color=colour, alpha=0.18, linewidth=0)
            # the same interval as a bar at each point: visible where a line has one point
            ax.errorbar(xs, [p["accuracy"] for p in mine],
                        yerr=[[p["accuracy"] - lo for p, lo in zip(mine, lows)],
                              [hi - p["accuracy"] for p, hi in zip(mine, highs)]],
                        fmt="none", ecolor=colour, elinewidth=1, capsize=3, alpha=0.7)
    if axis == DATA_SIZE:
        ax.set_xscale("log")
        # sizes given as fractions of each class (curves.py puts `all` at 1 then)
        fractions = all(p["x"] <= 1 for p in points)
        ax.set_xlabel("fraction of each class's training images (log scale; 'all' at 1)"
                      if fractions else
                      "training images per class (log scale; 'all' at the count it used)")
    else:
        ax.set_xlabel(axis)
    # ticks at the values the suite asked for, named as it named them
    ticks = {p["x"]: f"all ({p['x']:.0f})" if p["value"] == "all" and p["x"] > 1
             else p["value"] for p in points}
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(sorted(ticks), [ticks[x] for x in sorted(ticks)])
    ax.xaxis.set_minor_locator(NullLocator())
    subset = "clean test" if all(p["subset"] == "test_clean" for p in points) else "test"
    ax.set_ylabel(f"{subset} accuracy")
    covers = {p["covers"] for p in points}
    band = ("95% band over test images and seeds" if covers == {"test images and seeds"}
            else "95% band (" + "; ".join(sorted(covers)) + ")")
    ax.set_title(f"{subset} accuracy against {axis}: mean, {band}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
