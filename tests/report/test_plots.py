"""Figures read correctly: class names on the axes, the right numbers in the cells, both curves."""
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from mribench.report import run_figures as plots
from mribench.stats import metrics

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def _cm():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 3, 3, 2])
    return metrics.confusion(y, pred, CLASSES)


def _png(fig) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(buf)


def _cell_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_confusion_counts_and_labels():
    fig = plots.confusion_figure(_cm(), normalize=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    # row-major cells: the glioma row is 3 right, 1 called meningioma
    assert _cell_texts(fig)[:4] == ["3", "1", "0", "0"]
    assert "n=10" in ax.get_title()
    assert _png(fig).size[0] > 300


def test_confusion_row_normalised():
    fig = plots.confusion_figure(_cm(), normalize=True)
    texts = _cell_texts(fig)
    assert texts[:4] == ["0.75", "0.25", "0.00", "0.00"]
    assert texts[12:] == ["0.00", "0.00", "0.33", "0.67"]
    assert "row-normalised" in fig.axes[0].get_title()
    plt.close(fig)


def test_confusion_rejects_mismatched_names():
    cm = _cm()
    cm.columns = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="same class names"):
        plots.confusion_figure(cm, normalize=False)


def test_learning_curves_two_panels_train_and_val():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e + (0.3 if e == 4 else 0),
                "train_acc": 0.5 + 0.1 * e, "val_acc": 0.45 + 0.1 * e} for e in range(1, 5)]
    fig = plots.learning_curves_figure(history)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"train", "validation", "best val loss (epoch 3)"}
        assert list(lines["validation"].get_ydata()) == [row[f"val_{key}"] for row in history]
    for ax in (loss_ax, acc_ax):  # the restored epoch (lowest validation loss) is marked
        assert "best val loss (epoch 3)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert _png(fig).size == (1000, 400)


def test_learning_curves_missing_key_named():
    with pytest.raises(ValueError, match=r"epoch row 1 lacks \['val_acc'\]"):
        plots.learning_curves_figure([{"epoch": 1, "train_loss": 1, "val_loss": 1, "train_acc": 0}])
    with pytest.raises(ValueError, match="no epochs"):
        plots.learning_curves_figure([])



def test_explanation_grid_titles_colours_and_notes():
    images = [np.full((8, 8, 3), v) for v in (0.2, 0.5, 0.8)]
    fig = plots.explanation_grid(images, images, ["a", "b", "c"], "Grad-CAM", "legend text",
                                 correct=[True, False, True], notes=["", "empty map", ""])
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["a", "b", "c"]
    assert titled[1].title.get_color() == "firebrick" and titled[0].title.get_color() == "black"
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["empty map"]
    assert fig._suptitle.get_text() == "Grad-CAM\nlegend text"
    assert _png(fig).size == (780, 640)  # 3 columns of 2.6 in, one image + overlay row pair
    with pytest.raises(ValueError, match="3 images, 2 overlays"):
        plots.explanation_grid(images, images[:2], ["a", "b", "c"], "LIME")


def test_reliability_diagram_shows_bin_accuracy_and_ece():
    y = np.array([0, 0, 1, 1, 2, 3, 3, 3])
    probs = np.full((8, 4), 0.1)
    probs[np.arange(8), [0, 1, 1, 1, 2, 3, 3, 0]] = 0.7  # 6 of 8 right, all at confidence 0.7
    table = metrics.reliability_table(y, probs)
    fig = plots.reliability_figure(table, metrics.expected_calibration_error(y, probs), "test")
    bars = [p for p in fig.axes[0].patches if p.get_height() > 0]
    assert len(bars) == 1 and bars[0].get_height() == pytest.approx(6 / 8)
    assert "ECE = 0.050" in fig.axes[0].get_title()
    assert sum(p.get_height() for p in fig.axes[1].patches) == 8  # images per bin
    assert _png(fig).size[0] > 300
