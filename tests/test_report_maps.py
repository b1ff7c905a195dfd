"""The report's cross-model explanation grid: LIME's background is left clear (it is not a
feature), weights inside the brain are coloured, and each column says what the image is."""
from __future__ import annotations

import numpy as np

from mribench.report_plots import maps_grid


def _pixel(fig, ax, x: float, y: float) -> np.ndarray:
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    return rgba[int(rgba.shape[0] - py), int(px), :3].astype(int)


def test_lime_grid_leaves_the_background_clear_and_labels_columns():
    side = 64
    yy, xx = np.mgrid[:side, :side]
    mask = (yy - 32) ** 2 + (xx - 32) ** 2 < 20 ** 2
    image = np.full((side, side, 3), 60, np.uint8)
    lime = np.where(mask, np.where(xx < 32, 0.3, -0.3), 0.0)[None].astype(np.float32)
    entry = {"lime": lime, "images": image[None], "masks": mask[None],
             "labels": np.array([1]), "preds": np.array([0]), "classes": np.array(["a", "b"])}
    fig = maps_grid({"model x": entry, "model y": {**entry, "preds": np.array([1])}}, "lime")
    ax = fig.axes[0]
    corner, left, right = _pixel(fig, ax, 3, 3), _pixel(fig, ax, 22, 32), _pixel(fig, ax, 42, 32)
    assert corner[0] == corner[1] == corner[2]  # the scan's own grey: not a feature
    assert left[1] > left[0] + 40  # green: supports the prediction
    assert right[0] > right[1] + 40  # red: opposes it
    assert ax.get_title() == "true: b\npred: a" and ax.get_ylabel() == "model x"
    assert fig.axes[1].get_title() == "pred: b" and fig.axes[1].get_ylabel() == "model y"
    assert len(ax.collections) == 1  # the brain outline
