"""Metric values against hand-computed examples (binary and 4-class), and the run tables."""
import json
import math

import numpy as np
import pytest

from mribench import stats
from mribench.stats import metrics

BIN_Y = np.array([1, 1, 1, 1, 1, 0, 0, 0])
BIN_P1 = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.6, 0.2, 0.1])
BIN_PROBS = np.stack([1 - BIN_P1, BIN_P1], axis=1)

# 4-class: the predicted class gets 0.7, the others 0.1 each.
Y4 = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])
PRED4 = np.array([0, 1, 1, 1, 2, 0, 3, 3, 2])
PROBS4 = np.full((9, 4), 0.1)
PROBS4[np.arange(9), PRED4] = 0.7
CLASSES4 = ["glioma", "meningioma", "no tumor", "pituitary"]


def test_binary_by_hand():
    m = metrics.compute(BIN_Y, BIN_PROBS, ["no", "yes"])
    # yes: TP 3, FN 2, FP 1; no: TP 2, FN 1, FP 2
    expected = {
        "accuracy": 5 / 8, "balanced_accuracy": (3 / 5 + 2 / 3) / 2,
        "precision_yes": 3 / 4, "recall_yes": 3 / 5, "f1_yes": 2 / 3, "support_yes": 5,
        "precision_no": 2 / 4, "recall_no": 2 / 3, "f1_no": 4 / 7, "support_no": 3,
        "precision_macro": (3 / 4 + 1 / 2) / 2, "precision_weighted": (5 * 3 / 4 + 3 * 1 / 2) / 8,
        "recall_macro": (3 / 5 + 2 / 3) / 2, "recall_weighted": 5 / 8,
        "f1_macro": (2 / 3 + 4 / 7) / 2, "f1_weighted": (5 * 2 / 3 + 3 * 4 / 7) / 8,
        # micro: every image has one label, so P = R = F1 = accuracy (Study A's "precision")
        "precision_micro": 5 / 8, "recall_micro": 5 / 8, "f1_micro": 5 / 8,
        "macro_classes": 2,  # both classes have images: the macro averages run over both
        # p_o = 5/8, p_e = 3/8*4/8 + 5/8*4/8 = 1/2
        "kappa": (5 / 8 - 1 / 2) / (1 - 1 / 2),
        # 13 of the 15 (positive, negative) score pairs are ordered correctly
        "roc_auc": 13 / 15,
        "log_loss": -np.mean(np.log([0.9, 0.8, 0.7, 0.4, 0.3, 0.4, 0.8, 0.9])),
        # TP 3, TN 2, FP 1, FN 2
        "mcc": (3 * 2 - 1 * 2) / math.sqrt(4 * 5 * 3 * 4),
        # top-label confidence and correctness: 0.9 (2 right), 0.8 (2 right), 0.7 (1 of 2),
        # 0.6 (0 of 2), each pair alone in its bin
        "ece": (2 * 0.1 + 2 * 0.2 + 2 * 0.2 + 2 * 0.6) / 8,
    }
    assert set(m) == set(expected)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    assert all(type(v) is float for v in m.values())  # MLflow-ready plain floats


def test_four_class_by_hand():
    m = metrics.compute(Y4, PROBS4, CLASSES4)
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert [m[f"precision_{c}"] for c in ("glioma", "meningioma", "no_tumor", "pituitary")] == \
        pytest.approx([1 / 2, 2 / 3, 1 / 2, 1])
    assert [m[f"recall_{c}"] for c in ("glioma", "meningioma", "no_tumor", "pituitary")] == \
        pytest.approx([1 / 2, 1, 1 / 2, 2 / 3])
    assert m["support_pituitary"] == 3
    # p_o = 6/9; p_e = (2*2 + 2*3 + 2*2 + 3*2) / 81 = 20/81
    assert m["kappa"] == pytest.approx(34 / 61)
    # one-vs-rest AUC with ties counted 1/2 (worked out pair by pair)
    aucs = {"glioma": 9.5 / 14, "meningioma": 13 / 14, "no_tumor": 9.5 / 14, "pituitary": 15 / 18}
    for name, value in aucs.items():
        assert m[f"roc_auc_{name}"] == pytest.approx(value), name
    assert m["roc_auc_macro"] == pytest.approx(np.mean(list(aucs.values())))
    assert m["log_loss"] == pytest.approx(-(6 * math.log(0.7) + 3 * math.log(0.1)) / 9)
    assert "roc_auc" not in m


def test_auc_left_out_when_a_class_is_absent():
    y = np.array([0, 0, 1, 1])  # no "pituitary" or "no tumor" image
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]] * 2)
    m = metrics.compute(y, probs, CLASSES4)
    assert "roc_auc_pituitary" not in m and "roc_auc_macro" not in m
    assert "roc_auc_glioma" in m and m["support_pituitary"] == 0


@pytest.mark.parametrize("probs, match", [
    (np.full((9, 3), 1 / 3), "shape"),
    (np.full((9, 4), 0.5), "summing to 1"),
])
def test_bad_probabilities_are_named(probs, match):
    with pytest.raises(ValueError, match=match):
        metrics.compute(Y4, probs, CLASSES4)


def test_bad_labels_and_classes_are_named():
    with pytest.raises(ValueError, match=r"y_true.*\[0, 3\]"):
        metrics.compute(Y4 + 1, PROBS4, CLASSES4)
    with pytest.raises(ValueError, match="collide"):
        metrics.compute(BIN_Y, BIN_PROBS, ["no tumor", "no_tumor"])


def test_report_dict_and_text():
    as_dict, text = metrics.report(Y4, PRED4, CLASSES4)
    json.dumps(as_dict)
    assert as_dict["meningioma"]["precision"] == pytest.approx(2 / 3)
    assert as_dict["no tumor"]["support"] == 2
    assert as_dict["accuracy"] == pytest.approx(6 / 9)
    assert all(name in text for name in CLASSES4) and "macro avg" in text


def test_confusion_counts_and_names():
    cm = metrics.confusion(Y4, PRED4, CLASSES4)
    expected = [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 1, 2]]
    assert cm.to_numpy().tolist() == expected
    assert list(cm.index) == CLASSES4 and list(cm.columns) == CLASSES4
    csv = cm.to_csv()
    assert csv.splitlines()[0] == "true,glioma,meningioma,no tumor,pituitary"


def test_predictions_frame_keys_files_and_flags_clean_images():
    paths = [f"img{i}.jpg" for i in range(9)]
    frame = metrics.predictions_frame(paths, Y4, PROBS4, CLASSES4)
    assert list(frame.columns) == ["file", "true", "pred", "prob_glioma", "prob_meningioma",
                                   "prob_no_tumor", "prob_pituitary"]
    assert frame.loc[5, "true"] == "no tumor" and frame.loc[5, "pred"] == "glioma"
    assert frame.filter(like="prob_").sum(axis=1).to_numpy() == pytest.approx(np.ones(9))
    flagged = metrics.predictions_frame(paths, Y4, PROBS4, CLASSES4, clean=[True] * 8 + [False])
    assert list(flagged.columns[:4]) == ["file", "true", "pred", "clean"]
    assert flagged["clean"].tolist() == [True] * 8 + [False]
    with pytest.raises(ValueError, match="paths"):
        metrics.predictions_frame(paths[:3], Y4, PROBS4, CLASSES4)
    with pytest.raises(ValueError, match="clean"):
        metrics.predictions_frame(paths, Y4, PROBS4, CLASSES4, clean=[True])


def test_mcc_matches_sklearn_and_reliability_table_counts():
    from sklearn.metrics import matthews_corrcoef

    m = metrics.compute(Y4, PROBS4, CLASSES4)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(Y4, PRED4))
    table = metrics.reliability_table(Y4, PROBS4)
    assert table["count"].sum() == 9 and len(table) == metrics.ECE_BINS
    # every image has confidence 0.7; 6 of 9 are right: ECE = |6/9 - 0.7|
    (used,) = table[table["count"] > 0].itertuples()
    assert used.confidence == pytest.approx(0.7) and used.accuracy == pytest.approx(6 / 9)
    assert m["ece"] == pytest.approx(abs(6 / 9 - 0.7))
    # perfectly confident and right: ECE 0
    assert metrics.expected_calibration_error(Y4, np.eye(4)[Y4]) == pytest.approx(0.0)


def test_summarize_student_t():
    s = stats.summarize([0.90, 0.92, 0.94])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.92) and s["std"] == pytest.approx(0.02)
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, df=2) from the table
    assert s["ci95_low"] == pytest.approx(0.92 - half, abs=1e-6)
    assert s["ci95_high"] == pytest.approx(0.92 + half, abs=1e-6)
    one = stats.summarize([0.9])
    assert one["mean"] == 0.9 and math.isnan(one["std"]) and math.isnan(one["ci95_low"])
    with pytest.raises(ValueError, match="no values"):
        stats.summarize([])


def test_peak_memory_is_plausible():
    mem = metrics.peak_memory()
    big = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB touched: the peak must include it
    assert metrics.peak_memory()["peak_rss_mb"] >= 64 and big.sum() == 64 * 2**20
    assert 10 < mem["peak_rss_mb"] < 1e6
