"""Figures of the robustness sections (report/robustness.py's data): the configuration x
artefact heat map of mean accuracy and accuracy against severity per artefact."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def heatmap_figure(table: list[dict], artefacts: list[str], subset: str) -> Figure:
    """Mean accuracy over the severities, one cell per configuration and artefact, then mCA."""
    columns = [*artefacts, "mCA"]
    values = np.array([[row.get(f"{a}_accuracy") if a != "mCA" else row.get("mca")
                        for a in columns] for row in table], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.95 * len(columns), 1.0 + 0.5 * len(table)))
    image = ax.imshow(values, cmap="viridis", vmin=np.nanmin(values) - 0.02,
                      vmax=max(np.nanmax(values), np.nanmin(values) + 0.05), aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v < np.nanmean(values) else "black")
    ax.set_xticks(range(len(columns)), [c.replace("_", " ") for c in columns], rotation=30,
                  ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), [r["config"] for r in table], fontsize=8)
    ax.axvline(len(artefacts) - 0.5, color="white", linewidth=2)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label=f"accuracy ({subset} test)")
    ax.set_title("mean accuracy over severities", fontsize=9)
    fig.tight_layout()
    return fig


def severity_figure(curves: list[dict], artefacts: list[str], subset: str) -> Figure:
    """One panel per artefact: accuracy against severity (0 = uncorrupted), one line per
    configuration, with its 95% interval over test images and seeds as a band."""
    cols = min(4, len(artefacts))
    rows = math.ceil(len(artefacts) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.3 * rows), sharey=True,
                             squeeze=False)
    configs = list(dict.fromkeys(c["config"] for c in curves))
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(configs)}
    for ax, artefact in zip(axes.flat, artefacts):
        for name in configs:
            points = sorted((c for c in curves if c["config"] == name and c["artefact"] == artefact),
                            key=lambda c: c["severity"])
            if not points:
                continue
            x = [p["severity"] for p in points]
            ax.plot(x, [p["mean"] for p in points], "o-", color=colours[name], markersize=3,
                    label=name)
            ax.fill_between(x, [p["ci95"][0] for p in points], [p["ci95"][1] for p in points],
                            color=colours[name], alpha=0.2, linewidth=0)
        ax.set_title(artefact.replace("_", " "), fontsize=9)
        ax.set_xticks(sorted({c["severity"] for c in curves}))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(artefacts):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"accuracy ({subset})", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("severity (0 = none)", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 1.0), title="mean, 95% CI over test images and seeds",
               title_fontsize=8)
    fig.tight_layout()
    return fig
