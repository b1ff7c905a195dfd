"""A cell's post-hoc calibration and selective-prediction figures (called from run_cell, the
external sets and the robustness evaluation).

The temperature is fitted once per cell on its validation split (stats/calibration.py) and
logged as the metric `temperature`, with the validation NLL before and after. Every test-like
set is then scored twice: the existing metrics (ECE, log loss, AUC) stay those of the raw
probabilities, and `<prefix>_calibrated_<metric>` are those after scaling; the Brier score is
logged both ways (`<prefix>_brier`, `<prefix>_calibrated_brier`). Selective prediction
(`<prefix>_aurc`, `_eaurc`, `_accuracy_at_coverage_80` / `_90`, `_aurc_entropy`,
`_eaurc_entropy`) ranks images by the calibrated probabilities. Predictions files carry the
calibrated probabilities as `calibrated_prob_<class>` beside the raw `prob_<class>`.

knn cells are calibrated the same way: their logits are the log vote fractions, so the fitted
temperature is a power of the vote fractions (stats/calibration.py), which also keeps the
calibrated probabilities of a unanimous vote below 1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mribench import tracking
from mribench.console import console
from mribench.run import layout
from mribench.stats import calibration, metrics, selective

PROBABILITY_METRICS = ("ece", "log_loss", "brier")  # plus every roc_auc* key present


def fit(net, prepared, predict_loader, device: str, precision) -> float:
    """Fit and log the cell's temperature on its validation split."""
    from mribench.train.engine import evaluate

    ev = evaluate(net, predict_loader(prepared.splits["val"]), torch.nn.CrossEntropyLoss(),
                  device, precision=precision)
    y, probs = ev["targets"], ev["probs"]
    t = calibration.fit_temperature(y, probs)
    scaled = calibration.scale(probs, t)
    tracking.log_metrics({"temperature": t,
                          "val_log_loss_uncalibrated": calibration.nll(y, np.log(
                              np.clip(probs, calibration.TINY, None))),
                          "val_log_loss_calibrated": calibration.nll(y, np.log(
                              np.clip(scaled, calibration.TINY, None)))})
    low, high = (np.exp(b) for b in calibration.LOG_T_BOUNDS)
    if not low * 1.01 < t < high / 1.01:
        why = (f"the fitted temperature {t:.3g} sits at its bound: the validation split "
               f"({len(y)} images) is classified {'all right' if t < 1 else 'near chance'} "
               "and says little about calibration")
        tracking.set_tags({"temperature_note": why})
        console.print(f"calibration: {why}", style="yellow", markup=False, highlight=False)
    return t


def scores(y: np.ndarray, probs: np.ndarray, scaled: np.ndarray,
           classes: list[str]) -> dict[str, float]:
    """Brier of the raw `probs`, the probability metrics of the `scaled` (calibrated) ones and
    the selective-prediction figures from them; `metrics.compute` already gives the raw ECE,
    log loss and AUC."""
    after = metrics.compute(y, scaled, classes)
    out = {"brier": calibration.brier(y, probs), "calibrated_brier": calibration.brier(y, scaled)}
    out |= {f"calibrated_{k}": v for k, v in after.items()
            if k in PROBABILITY_METRICS or k.startswith("roc_auc")}
    return out | selective.metrics(scaled, y)


def log_subset(prefix: str, y: np.ndarray, probs: np.ndarray, temperature: float,
               classes: list[str], figures: bool = True) -> dict[str, float]:
    """Log one subset's calibrated and selective metrics (and, for the cell's own test
    subsets, the calibrated reliability table and diagram); returns them unprefixed."""
    from mribench.report import run_figures as plots

    scaled = calibration.scale(probs, temperature)
    out = scores(y, probs, scaled, classes)
    # a class the subset has no image of has no AUC: left out, not logged (metrics.defined)
    tracking.log_metrics({f"{prefix}_{k}": v for k, v in metrics.defined(out).items()})
    if figures:
        table = metrics.reliability_table(y, scaled)
        tracking.log_frame(table, layout.metrics_file("reliability", prefix, "csv", "_calibrated"))
        tracking.log_figure(plots.reliability_figure(
            table, out["calibrated_ece"], f"{prefix.replace('_', ' ')}, calibrated "
            f"(T = {temperature:.3g})"), layout.plot_file("reliability", prefix, "_calibrated"))
    return out


def with_calibrated(frame: pd.DataFrame, scaled: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The predictions frame with `calibrated_prob_<class>` columns (the `scaled`
    probabilities) after the raw ones."""
    return frame.assign(**{f"calibrated_prob_{metrics.safe_name(c)}": scaled[:, i]
                           for i, c in enumerate(classes)})
