"""Scoring a trained cell on its test split: the full split and its clean subset from one pass
over the test images, each subset's metrics, interval, report, confusion matrix and reliability
diagram, and the predictions file the report pairs configurations on (run/layout.py names
where each goes)."""
from __future__ import annotations

import torch

from mribench import stats, tracking
from mribench.report import run_figures as plots
from mribench.run import calibrated, composition, layout, shortcut_log
from mribench.stats import calibration, metrics
from mribench.train.engine import evaluate


def score_test(model, prepared, predict_loader, device, precision,
               temperature: float = 1.0) -> dict[str, float]:
    """Test metrics of the restored best-validation checkpoint on the full test split and on its
    clean subset (no exact/near copy in train or val), from one pass over the test images."""
    samples = prepared.splits["test"]
    ev = evaluate(model, predict_loader(samples), torch.nn.CrossEntropyLoss(), device,
                  precision=precision)
    y, probs = ev["targets"], ev["probs"]
    subsets, clean = layout.scored_subsets(samples, prepared.clean_test)
    out = {}
    for prefix, mask in subsets.items():
        out[f"{prefix}_accuracy"] = log_subset(prefix, y[mask], probs[mask], prepared.classes)
        calibrated.log_subset(prefix, y[mask], probs[mask], temperature, prepared.classes)
    tracking.log_metrics({"test_loss": ev["loss"]})
    paths = [prepared.relative(s.path) for s in samples]  # pairs across machines
    frame = metrics.predictions_frame(paths, y, probs, prepared.classes,
                                      None if clean is None else clean.tolist(),
                                      prepared.test_groups or None)
    frame = calibrated.with_calibrated(frame, calibration.scale(probs, temperature),
                                       prepared.classes)
    tracking.log_frame(shortcut_log.annotate(frame, prepared, samples), layout.PREDICTIONS)
    tracking.log_metrics(composition.logged_metrics(prepared))
    return out


def log_subset(prefix: str, y, probs, classes) -> float:
    """Metrics, Wilson interval, report, confusion matrix and reliability diagram of one subset;
    artifacts of the clean subset carry a _clean suffix."""
    scores = metrics.compute(y, probs, classes)
    pred = probs.argmax(1)
    low, high = stats.wilson(int((pred == y).sum()), len(y))
    # undefined values (recall/F1 of a class the subset has no image of) are not logged
    tracking.log_metrics({f"{prefix}_{k}": v for k, v in metrics.defined(scores).items()}
                         | {f"{prefix}_accuracy_wilson_low": low,
                            f"{prefix}_accuracy_wilson_high": high, f"{prefix}_n": len(y)})
    report, text = metrics.report(y, pred, classes)
    tracking.log_dict(report, layout.metrics_file("classification_report", prefix, "json"))
    tracking.log_text(text, layout.metrics_file("classification_report", prefix, "txt"))
    cm = metrics.confusion(y, pred, classes)
    tracking.log_frame(cm, layout.metrics_file("confusion_matrix", prefix, "csv"), index=True)
    tracking.log_figure(plots.confusion_figure(cm, normalize=False),
                        layout.plot_file("confusion_matrix", prefix))
    tracking.log_figure(plots.confusion_figure(cm, normalize=True),
                        layout.plot_file("confusion_matrix", prefix, "_normalized"))
    table = metrics.reliability_table(y, probs)
    tracking.log_frame(table, layout.metrics_file("reliability", prefix, "csv"))
    tracking.log_figure(plots.reliability_figure(table, scores["ece"], prefix.replace("_", " ")),
                        layout.plot_file("reliability", prefix))
    return scores["accuracy"]
