"""The artefact grid: one image under every artefact (rows) at every severity (columns)."""
from __future__ import annotations

import numpy as np

from mribench.robustness.corrupt import corrupt
from mribench.robustness.severities import SEVERITIES, TABLE


def artefact_grid(pixels: np.ndarray, image_key: str, artefacts=tuple(TABLE),
                  severities=SEVERITIES, title: str = ""):
    """A matplotlib figure: the clean image, then each severity, one row per artefact."""
    import matplotlib.pyplot as plt

    cols = 1 + len(severities)
    fig, axes = plt.subplots(len(artefacts), cols, figsize=(1.35 * cols, 1.45 * len(artefacts)),
                             squeeze=False)
    grey = pixels.shape[2] == 1
    for r, artefact in enumerate(artefacts):
        shown = [pixels] + [corrupt(pixels, artefact, s, image_key) for s in severities]
        for c, img in enumerate(shown):
            ax = axes[r, c]
            ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0,
                      vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {severities[c - 1]}", fontsize=8)
            if c == 0:
                ax.set_ylabel(artefact.replace("_", " "), fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.97 if title else 1))
    if title:
        fig.suptitle(title, fontsize=9, y=0.995)
    return fig
