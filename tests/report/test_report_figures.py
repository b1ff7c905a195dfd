"""The report's figures on hand-made inputs: the cross-model explanation grid (LIME's background
left clear, weights inside the brain coloured, each column labelled) and a suite that mixes
4-class and binary datasets."""
from __future__ import annotations

import json

import numpy as np

from mribench.report.figures import maps_grid


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


def test_a_suite_mixing_four_class_and_binary_sets_reports_each_with_its_classes():
    """The reference suite mixes the 4-class sets with the binary one: recall and confusion
    matrices use each configuration's own classes (a crash here once lost the whole report)."""
    import pandas as pd

    from mribench.report.figures import confusion_grid, recall_figure
    from mribench.report.tables import Results, confusion_tables, recall_table

    four, two = ["glioma", "meningioma", "notumor", "pituitary"], ["no", "yes"]
    runs = pd.DataFrame([
        {"run_id": "a", "dataset": "d4", "config_key": "k1", "model": "m",
         "strategy": "frozen", "seed": "0", "fold": "", "classes":
         json.dumps(four), "test_clean_recall_glioma": 0.5,
         "test_clean_recall_notumor": 1.0},
        {"run_id": "b", "dataset": "d2", "config_key": "k2", "model": "m",
         "strategy": "frozen", "seed": "0", "fold": "0", "classes":
         json.dumps(two), "test_clean_recall_yes": 0.75}])
    predictions = {
        "a": pd.DataFrame({"true": ["glioma", "notumor"], "pred": ["meningioma", "notumor"],
                           "clean": [True, True]}),
        "b": pd.DataFrame({"true": ["yes", "yes", "no"], "pred": ["yes", "no", "no"],
                           "clean": [True, True, False]})}
    results = Results("e", runs, predictions)
    recall = recall_table(results, "clean")
    assert recall.loc["d4: frozen", "glioma"] == 0.5 and recall.loc["d2: frozen", "yes"] == 0.75
    assert pd.isna(recall.loc["d2: frozen", "glioma"]) and pd.isna(recall.loc["d4: frozen", "yes"])
    tables = confusion_tables(results, "clean")
    assert list(tables["d2: frozen"].index) == two and list(tables["d4: frozen"].index) == four
    assert tables["d2: frozen"].loc["yes", "no"] == 1 and tables["d2: frozen"].to_numpy().sum() == 2
    confusion_grid(tables)  # one panel per configuration, each at its own size
    recall_figure(recall)
