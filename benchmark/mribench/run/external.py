"""External test sets: every model trained on a dataset is also tested on other collections.

An external set (`datasets[].external` in a suite) is used whole, with the cell's preprocessing.
Its labels meet the model's classes in an evaluation label space: `label_map` renames the
external set's labels (canonical names or the publisher's folder names), `prediction_map` folds
the model's classes (their probabilities add up: four tumour classes -> yes / no).

The public sets share images (the 7023 set was assembled partly from the 3264 set), so before
evaluating, every external image that is an exact (same bytes) or near (perceptual hash within
the threshold) duplicate of a training or validation image of the cell is counted and left out
of the external_clean_<key>_* metrics. The full-set figures are logged too (external_<key>_*),
so the size of the contamination is visible.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mribench import tracking
from mribench.config.schema import ExternalConfig, PreprocessConfig
from mribench.data import images
from mribench.data.preparation import PreparedData, usable_records
from mribench.data.registry import KNOWN
from mribench.data.samples import DataError, Sample
from mribench.files import file_sha256
from mribench.report import run_figures as plots
from mribench.run import calibrated, layout
from mribench.stats import calibration, composition, metrics
from mribench.train.engine import evaluate

log = logging.getLogger(__name__)


@dataclass
class ExternalSet:
    cfg: ExternalConfig
    root: Path
    classes: list[str]  # evaluation labels
    samples: list[Sample]  # label: index into `classes`
    hashes: list[tuple[str, str]]  # (sha256, perceptual hash) per sample
    fold: np.ndarray  # model class index -> evaluation label index
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)


def prepare_external(cfg: ExternalConfig, pre: PreprocessConfig, model_classes: list[str],
                     data_dir: str | None) -> ExternalSet:
    """Scan, validate and decode the set (cache permitting) and check both label maps."""
    where = f"external set {cfg.name!r}"
    scan, records, skipped = usable_records(cfg, pre, data_dir, where)
    publisher = KNOWN[cfg.name].class_map if cfg.name in KNOWN else {}
    # the scan applied the map and refused keys that name no label (data/scan.fold_labels)
    label_map = {publisher.get(k, k): v for k, v in cfg.label_map.items()}
    unknown = sorted(set(cfg.prediction_map) - set(model_classes))
    if unknown:
        raise DataError(f"{where}: prediction_map names {unknown}, which are not the model's "
                        f"classes {model_classes}")
    predicted = [cfg.prediction_map.get(c, c) for c in model_classes]
    classes = sorted(set(predicted))
    unmatched = sorted({label_map.get(r.cls, r.cls) for r in records} - set(classes))
    if unmatched:
        raise DataError(f"{where}: its label(s) {unmatched} match no class the model predicts "
                        f"({classes} after prediction_map); map them with label_map")
    if len(classes) < 2:
        raise DataError(f"{where}: prediction_map folds every class into {classes}: nothing "
                        "left to tell apart")
    samples = [Sample(r.path, classes.index(label_map.get(r.cls, r.cls))) for r in records]
    return ExternalSet(cfg, scan.root, classes, samples, [(r.sha, r.phash) for r in records],
                       np.array([classes.index(p) for p in predicted]), skipped)


def _words(phashes: list[str]) -> np.ndarray:
    words = len(phashes[0]) // 16
    return np.array([[int(p[k:k + 16], 16) for k in range(0, 16 * words, 16)] for p in phashes],
                    dtype=np.uint64).reshape(len(phashes), words)


def cross_duplicates(external: list[tuple[str, str]], seen: list[tuple[str, str]],
                     threshold: int, chunk: int = 256) -> tuple[list[str], np.ndarray, np.ndarray]:
    """For each external (sha, phash): 'exact', 'near' or '' against the `seen` images, the
    distance in bits to the nearest seen image and its index. `threshold` counts differing bits
    of the whole 256-bit hash, as `near_bits` in the within-dataset audit."""
    if not external or not seen:
        n = len(external)
        return [""] * n, np.full(n, -1), np.full(n, -1)
    ext, ref = _words([h for _, h in external]), _words([h for _, h in seen])
    nearest, index = np.empty(len(ext), dtype=np.int64), np.empty(len(ext), dtype=np.int64)
    for start in range(0, len(ext), chunk):
        distance = np.bitwise_count(ext[start:start + chunk, None, :] ^ ref[None, :, :]).sum(
            axis=2, dtype=np.int32)
        index[start:start + chunk] = distance.argmin(axis=1)
        nearest[start:start + chunk] = distance.min(axis=1)
    shas = {sha for sha, _ in seen}
    kinds = ["exact" if sha in shas else "near" if d <= threshold else ""
             for (sha, _), d in zip(external, nearest)]
    return kinds, nearest, index


def _hashes(path) -> tuple[str, str]:
    """(sha256, perceptual hash) of a training or validation image (cached by prepare)."""
    sha = file_sha256(path)
    return sha, images.inspect(path, sha)


def evaluate_external(ext: ExternalSet, prepared: PreparedData, net: torch.nn.Module,
                      predict_loader: Callable[[list[Sample]], object],
                      device: str, temperature: float = 1.0) -> dict[str, float]:
    """Test `net` on the set, full and clean; log metrics, confusion matrices, predictions
    (`temperature`: the cell's, for the calibrated figures of run/calibrated.py)."""
    seen = [s for split in ("train", "val") for s in prepared.splits[split]]
    probs = evaluate(net, predict_loader([Sample(s.path, 0) for s in ext.samples]),
                     torch.nn.CrossEntropyLoss(), device)["probs"]
    return score_external(ext, probs, [_hashes(s.path) for s in seen],
                          [prepared.relative(s.path) for s in seen],
                          f"{len(seen)} training and validation images of {prepared.name}",
                          temperature)


def score_external(ext: ExternalSet, probs: np.ndarray, seen: list[tuple[str, str]],
                   seen_files: list[str], compared_with: str,
                   temperature: float = 1.0) -> dict[str, float]:
    """Score the model's class probabilities on the set, whole and without the images that
    duplicate one it has seen (`seen`: (sha256, perceptual hash) of its training and validation
    images, named by `seen_files`); log metrics, audit, confusion matrices, predictions."""
    key = ext.cfg.key
    kinds, nearest, index = cross_duplicates(ext.hashes, seen, ext.cfg.near_bits)
    # the model's classes fold into the evaluation labels: probabilities of merged classes add up
    folded = np.zeros((len(probs), len(ext.classes)))
    np.add.at(folded.T, ext.fold, probs.T)
    # calibrated: the model's classes scaled first, then folded the same way
    folded_cal = np.zeros_like(folded)
    np.add.at(folded_cal.T, ext.fold, calibration.scale(probs, temperature).T)
    y = np.array([s.label for s in ext.samples])
    clean = np.array([k == "" for k in kinds])
    counts = {"n": len(y), "n_exact_duplicates": kinds.count("exact"),
              "n_near_duplicates": kinds.count("near"), "n_clean": int(clean.sum())}
    tracking.log_metrics({f"external_{key}_{k}": v for k, v in counts.items()})
    tracking.log_dict({"external_set": ext.cfg.name, "evaluation_classes": ext.classes,
                       "near_bits_of_256": ext.cfg.near_bits,
                       "compared_with": compared_with, **counts,
                       "skipped_files": len(ext.skipped)}, layout.external_file(key, "audit.json"))
    out = {}
    for prefix, mask, name in ((f"external_{key}", np.ones(len(y), bool), "confusion_matrix"),
                               (f"external_clean_{key}", clean, "confusion_matrix_clean")):
        if not mask.any():
            continue  # every image was a duplicate: no clean figure (the counts say why)
        with warnings.catch_warnings(record=True) as caught:
            # an external subset often lacks a class (sklearn: "y_pred contains classes not in
            # y_true"): expected, and nothing a user can act on; kept off the console
            warnings.simplefilter("always")
            scores = metrics.compute(y[mask], folded[mask], ext.classes)
            scores |= calibrated.scores(y[mask], folded[mask], folded_cal[mask], ext.classes)
        for w in caught:
            log.debug("%s: %s", prefix, w.message)
        # undefined values (a class the set has no image of) are left out, not logged as 0
        tracking.log_metrics({f"{prefix}_{k}": v for k, v in metrics.defined(scores).items()}
                             | composition.logged(prefix, composition.counts(y[mask], ext.classes)))
        out[f"{prefix}_accuracy"] = scores["accuracy"]
        cm = metrics.confusion(y[mask], folded[mask].argmax(1), ext.classes)
        tracking.log_frame(cm, layout.external_file(key, f"{name}.csv"), index=True)
        tracking.log_figure(plots.confusion_figure(cm, normalize=False),
                            layout.external_file(key, f"{name}.png"))
    paths = [ext.relative(s.path) for s in ext.samples]
    frame = metrics.predictions_frame(paths, y, folded, ext.classes)
    frame = calibrated.with_calibrated(frame, folded_cal, ext.classes)
    frame["duplicate"] = kinds
    frame["nearest_seen_bits"] = nearest
    frame["nearest_seen_file"] = [seen_files[i] if i >= 0 else "" for i in index]
    tracking.log_frame(frame, layout.external_file(key, "predictions.csv"))
    return out
