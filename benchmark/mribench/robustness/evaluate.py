"""A trained cell scored under every declared artefact and severity (one call from run_cell).

The whole model (backbone and head) runs on each corrupted image, on the feature-reuse path too:
the stored features are of clean images, and a corruption acts before the backbone.

Metric names (MLflow), with P = `robust` for the full test split and `robust_clean` for its
clean subset (no exact/near copy in train/val, as `test_clean_*`):
    P_<artefact>_s<k>_accuracy, _balanced_accuracy, _ece   one artefact at severity k
    P_<artefact>_s<k>_calibrated_ece, _aurc, _eaurc, _accuracy_at_coverage_90
                                the cell's temperature applied (run/calibrated.py): does the
                                model know when an artefact has fooled it?
    P_<artefact>_accuracy       mean accuracy over the declared severities
    P_<artefact>_relative_drop  1 - P_<artefact>_accuracy / uncorrupted accuracy
    P_mca                       mean corruption accuracy: mean over artefacts and severities
    P_relative_drop             1 - P_mca / uncorrupted accuracy (test_accuracy / test_clean_)
The predictions under every corruption go to robustness/predictions.csv (artefact, severity,
then the columns of metrics/predictions.csv), so the report pairs configurations on them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mribench import data, tracking
from mribench.console import console
from mribench.robustness.cache import corrupted_rows
from mribench.run import layout
from mribench.stats import metrics

PREFIXES = {layout.TEST: "robust", layout.TEST_CLEAN: "robust_clean"}  # uncorrupted prefix -> ours
PER_CELL = ("accuracy", "balanced_accuracy", "ece", "calibrated_ece", "aurc", "eaurc",
            "accuracy_at_coverage_90")


def evaluate_robustness(cell, model, prepared, mean, std, device: str, precision,
                        uncorrupted: dict[str, float], temperature: float = 1.0) -> dict[str, float]:
    """Log the robustness metrics and predictions of one trained cell; returns the mCA values.
    `uncorrupted` holds the cell's test_accuracy (and test_clean_accuracy) from _test;
    `temperature` the cell's, fitted on its (uncorrupted) validation split."""
    from mribench.run.calibrated import scores as calibrated_scores
    from mribench.run.calibrated import with_calibrated
    from mribench.stats.calibration import scale
    from mribench.train.engine import evaluate
    from mribench.train.precision import channels_last

    cfg = cell.robustness
    if cfg is None:
        return {}
    samples = prepared.splits["test"]
    y = np.array([s.label for s in samples])
    subsets, clean = layout.scored_subsets(samples, prepared.clean_test)
    paths = [prepared.relative(s.path) for s in samples]
    logged: dict[str, float] = {}
    frames = []
    for artefact in cfg.artefacts:
        for k in cfg.severities:
            loader = data.make_loader(samples, cell.preprocess, None, mean=mean, std=std,
                                      batch_size=cell.training.batch_size, shuffle=False,
                                      seed=cell.seed, device=device,
                                      channels_last=channels_last(device))
            # the same loader, its rows taken from the corrupted-image store
            loader.dataset.rows = corrupted_rows([s.path for s in samples], cell.preprocess,
                                                 artefact, k)
            ev = evaluate(model, loader, torch.nn.CrossEntropyLoss(), device, precision=precision)
            scaled = scale(ev["probs"], temperature)
            for name, mask in subsets.items():
                scores = metrics.compute(y[mask], ev["probs"][mask], prepared.classes)
                scores |= calibrated_scores(y[mask], ev["probs"][mask], scaled[mask],
                                            prepared.classes)
                logged |= {f"{PREFIXES[name]}_{artefact}_s{k}_{m}": scores[m] for m in PER_CELL}
            frame = metrics.predictions_frame(paths, ev["targets"], ev["probs"], prepared.classes,
                                              None if clean is None else clean.tolist(),
                                              prepared.test_groups or None)
            frame = with_calibrated(frame, scaled, prepared.classes)
            frames.append(frame.assign(artefact=artefact, severity=k))
    for name in subsets:
        logged |= summary(logged, PREFIXES[name], cfg.artefacts, cfg.severities,
                          uncorrupted.get(f"{name}_accuracy"))
    tracking.log_metrics(logged)
    table = pd.concat(frames, ignore_index=True)
    first = ["artefact", "severity"]
    tracking.log_frame(table[first + [c for c in table.columns if c not in first]],
                       layout.ROBUST_PREDICTIONS)
    head = {k: v for k, v in logged.items() if k.endswith("_mca")}
    console.print(f"robustness: {len(cfg.artefacts)} artefact(s) x {len(cfg.severities)} "
                  "severities, mean corruption accuracy "
                  + ", ".join(f"{k} {v:.3f}" for k, v in head.items()))
    return head


def summary(logged: dict[str, float], prefix: str, artefacts, severities,
            uncorrupted: float | None) -> dict[str, float]:
    """Means over severities per artefact, the mCA, and the drops relative to the uncorrupted
    accuracy (ImageNet-C's relative measure, per cell)."""
    out = {}
    for artefact in artefacts:
        out[f"{prefix}_{artefact}_accuracy"] = float(np.mean(
            [logged[f"{prefix}_{artefact}_s{k}_accuracy"] for k in severities]))
    out[f"{prefix}_mca"] = float(np.mean([out[f"{prefix}_{a}_accuracy"] for a in artefacts]))
    if uncorrupted:  # None or 0: no relative measure
        for artefact in artefacts:
            out[f"{prefix}_{artefact}_relative_drop"] = \
                1 - out[f"{prefix}_{artefact}_accuracy"] / uncorrupted
        out[f"{prefix}_relative_drop"] = 1 - out[f"{prefix}_mca"] / uncorrupted
    return out
