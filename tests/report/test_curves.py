"""Where two curves separate: the first axis value at which their 95% intervals do not overlap,
checked on fixed points and, for the interval the report uses, by simulation under a known
truth (equal configurations rarely separate; clearly different ones do)."""
from __future__ import annotations

import numpy as np

from mribench.report.curves import separations
from mribench.stats.intervals import two_level_bootstrap


def point(line: str, x: float, acc: float, half: float, value: str | None = None) -> dict:
    return {"dataset": "d", "axis": "train_per_class", "line": line, "value": value or f"{x:g}",
            "x": x, "accuracy": acc, "ci95_low": acc - half, "ci95_high": acc + half}


def test_first_separation_and_whether_it_lasts():
    points = [point("probe", 10, 0.60, 0.05), point("scratch", 10, 0.50, 0.06),  # overlap
              point("probe", 25, 0.70, 0.04), point("scratch", 25, 0.55, 0.05),  # apart
              point("probe", 50, 0.75, 0.03), point("scratch", 50, 0.65, 0.04),  # apart
              point("probe", 1355, 0.85, 0.02, "all")]  # scratch did not run there
    (row,) = separations(points)
    assert (row["a"], row["b"], row["higher"]) == ("probe", "scratch", "probe")
    assert row["separates_at"] == "25" and row["apart_at"] == "25, 50" and row["stays_apart"]
    assert row["compared_at"] == "10, 25, 50"
    assert row["statement"] == ("probe above scratch: intervals first apart at train_per_class "
                                "25 and stay apart up to 50, the largest both ran at")


def test_curves_that_touch_again_and_curves_that_never_part():
    points = [point("a", 10, 0.6, 0.02), point("b", 10, 0.5, 0.02),
              point("a", 20, 0.6, 0.1), point("b", 20, 0.55, 0.1),
              point("c", 10, 0.59, 0.05), point("c", 20, 0.6, 0.1)]
    rows = {(r["a"], r["b"]): r for r in separations(points)}
    assert not rows[("a", "b")]["stays_apart"] and rows[("a", "b")]["apart_at"] == "10"
    assert rows[("a", "c")]["separates_at"] is None
    assert "overlap at every train_per_class compared (10, 20)" in rows[("a", "c")]["statement"]


def _config(rng, difficulty, shift, seeds=3):
    """[seeds, images] 0/1 correctness: each image's difficulty (shared by both
    configurations: the same test images), a per-seed shift of the whole run."""
    logit = difficulty[None, :] + shift + rng.normal(0, 0.1, size=(seeds, 1))
    return (rng.random((seeds, difficulty.size)) < 1 / (1 + np.exp(-logit))).astype(float)


def _separated(a, b) -> bool:
    ia, ib = (two_level_bootstrap(m, n_boot=400, seed=1) for m in (a, b))
    return ia["ci95_low"] > ib["ci95_high"] or ib["ci95_low"] > ia["ci95_high"]


def test_equal_configurations_rarely_separate_and_different_ones_do():
    rng = np.random.default_rng(0)
    null = effect = 0
    reps = 150
    for _ in range(reps):
        difficulty = rng.normal(0.4, 1.5, size=300)  # 300 test images, accuracy about 0.57
        null += _separated(_config(rng, difficulty, 0.0), _config(rng, difficulty, 0.0))
        effect += _separated(_config(rng, difficulty, 1.0), _config(rng, difficulty, 0.0))
    # two 95% intervals apart: far rarer than 5% under equality (about 0.6% for normal ones)
    assert null / reps <= 0.03
    assert effect / reps >= 0.9  # a shift of 1 logit (about 0.17 in accuracy) is found


def test_curves_that_cross_are_not_said_to_stay_apart():
    # kNN above fine-tuning on few images, below it on many: apart at both sizes, on
    # opposite sides
    points = [point("knn", 10, 0.70, 0.03), point("full", 10, 0.50, 0.05),
              point("knn", 50, 0.75, 0.03), point("full", 50, 0.90, 0.02)]
    (row,) = separations(points)
    assert row["higher"] == "knn" and not row["stays_apart"] and row["crosses_at"] == "50"
    assert row["statement"] == ("knn above full: intervals first apart at train_per_class 10; "
                                "the curves cross: full above knn, intervals apart, at 50")


def test_a_curve_of_fractions_is_labelled_as_fractions():
    from mribench.report.curve_figure import curve_figure

    points = [{**point("probe", x, 0.6 + x / 10, 0.05, value), "subset": "test_clean",
               "covers": "test images and seeds"}
              for x, value in ((0.1, "0.1"), (0.5, "0.5"), (1.0, "all"))]
    label = curve_figure(points, "train_per_class").axes[0].get_xlabel()
    assert label.startswith("fraction of each class's training images")
    counts = [{**p, "x": p["x"] * 100} for p in points]
    label = curve_figure(counts, "train_per_class").axes[0].get_xlabel()
    assert label.startswith("training images per class")


def test_a_size_above_what_a_class_has_is_drawn_at_the_count_used():
    import json

    import pandas as pd

    from mribench.report.curves import curve_points, display_points

    # classes of 300 and 400 training images: 500 per class takes them all (n_train 700)
    used = {"10": 20, "500": 700, "all": 700}
    runs = pd.DataFrame([{"config_key": value, "axis.train_per_class": value,
                          "n_train": str(n), "classes": json.dumps(["a", "b"])}
                         for value, n in used.items()])
    rows = [{"config_key": value, "dataset": "d", "model": "m", "strategy": "knn", "n": 1,
             "seeds": 1, "test_clean_accuracy": 0.8, "test_clean_accuracy_ci95": (0.7, 0.9),
             "test_clean_images": 100} for value in used]
    points = curve_points(runs, rows)
    assert [(p["value"], p["x"]) for p in points] == [("10", 10.0), ("500", 350.0),
                                                      ("all", 350.0)]
    shown = [p["value"] for p in display_points(points)]
    assert shown == ["10", "500 (350 per class used)", "all (350 per class)"]


def test_same_test_images_is_said_only_of_axes_that_keep_them():
    from mribench.report.curves import images_note

    assert images_note("train_per_class").endswith("on the same test images.")
    assert images_note("training.lr").endswith("on the same test images.")
    assert "changes their pixels" in images_note("image_size")
    for axis in ("val_fraction", "protocol", "subset_per_class", "dedup",
                 "datasets.0.near_bits"):
        assert "not necessarily scored on the same test images" in images_note(axis)
