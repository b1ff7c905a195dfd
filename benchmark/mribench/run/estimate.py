"""What a suite will cost before it runs: images x epochs per cell and wall time on this machine,
from the calibrated rates (run/calibrate.py) and the cell's own split sizes, epochs and passes.

A cell's seconds, per image-pass at the calibrated rate of its (model, size):
- end to end (scratch, full, partial, gradual, a frozen backbone with augmentation): every
  epoch trains on the training images and evaluates the validation images; partial / gradual
  train part of the network, so their step lies between a forward pass and a full training
  step (interpolated by the share of block groups that train; the range spans both ends);
- feature reuse (frozen / linear_probe without augmentation) and kNN: one forward pass over
  train + validation + test, then head epochs on stored features, which cost next to nothing;
- then the test set (and each external set, each robustness artefact x severity) once forward,
  explanations per explained image (a CAM: a training step; LIME: lime_samples forward passes;
  faithfulness adds ~40 forward passes per map; the randomisation check doubles them).
The range: fastest calibrated batch, early stopping at its earliest (patience + 1 epochs), and
10 s per cell of set-up and logging, up to the slowest calibrated batch x 1.2 (the input
pipeline: docs/speed.md measured real epochs at 0.86-0.98 of synthetic throughput), every
epoch run, and 60 s per cell (SETUP; plus STARTUP once per invocation). Not included:
decoding images on first use (once per dataset and image size, then cached; ~100 s for the
7023 set on a 2-core CPU) and weight downloads.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from mribench.config.schema import DatasetConfig, SplitConfig
from mribench.data.locate import find_root
from mribench.data.registry import KNOWN
from mribench.data.samples import DataError
from mribench.matrix import Cell
from mribench.models import registry, strategies
from mribench.run import calibrate

PIPELINE = 1.2  # the high end's allowance for the input pipeline (see the docstring)
# seconds per cell for building the model, logging to MLflow, figures and saving the model: low
# / mid / high (a smoke cell of 24 images took 35 s here on a loaded 2-core machine, almost all
# of it this), and once per invocation for imports and opening the store
SETUP = (10.0, 30.0, 60.0)
STARTUP = (10.0, 30.0, 90.0)
FAITHFULNESS_PASSES = 40
HOW = ("range: fastest calibrated batch, earliest early stop and 10 s of set-up and logging per "
       "cell, to the slowest batch x 1.2 (input pipeline), every epoch and 60 s per cell; image "
       "decoding on first use and weight downloads not included")


@dataclass(frozen=True)
class Sizes:
    train: int
    val: int
    test: int
    classes: int


def _total(spec, ds: DatasetConfig) -> dict[str, int]:
    """Files per official split folder, the registry's counts (or counted on disk for a user
    set), cut to subset_per_class."""
    counts = dict(spec.expected)
    if ds.subset_per_class:
        k = len(spec.classes)
        counts = {s: min(n, ds.subset_per_class * k) for s, n in counts.items()}
    return counts


def sizes(ds: DatasetConfig, split: SplitConfig, data_dir: str | None) -> Sizes | None:
    """Images in train / validation / test of a cell, from the registry's file counts and the
    split's fractions (exact counts come from the data when the cell runs); None when unknown."""
    if ds.name in KNOWN and not (ds.root or ds.manifest):
        spec = KNOWN[ds.name]
        counts, classes = _total(spec, ds), len(spec.classes)
    else:
        counted = _count_user(ds, data_dir)
        if counted is None:
            return None
        counts, classes = {"all": counted[0]}, counted[1]
    total = sum(counts.values())
    if split.protocol == "official" and len(counts) == 2 and "Testing" in counts:
        test = counts["Testing"]
    elif split.protocol == "kfold":
        test = round(total / split.folds)
    else:
        test = round(total * split.test_fraction)
    side = total - test
    val = round(side * split.val_fraction)
    train = side - val
    tpc = ds.train_per_class
    if isinstance(tpc, int):
        train = min(train, tpc * classes)
    elif isinstance(tpc, float):
        train = round(train * tpc)
    return Sizes(train, val, test, classes)


def _count_user(ds, data_dir: str | None) -> tuple[int, int] | None:
    """(files, classes) of a user dataset found on disk, without decoding."""
    try:
        if ds.manifest:
            import pandas as pd

            frame = pd.read_csv(ds.manifest)
            return len(frame), frame["label"].nunique()
        root = find_root(ds.name, ds.root, data_dir)
    except (DataError, OSError, KeyError, ValueError):
        return None
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return len(files), len({p.parent.name for p in files}) or 1


def _external_images(cell: Cell) -> int:
    n = 0
    for ext in cell.dataset.external:
        if ext.name in KNOWN and not (ext.root or ext.manifest):
            per_split = KNOWN[ext.name].expected.values()
            cap = (ext.subset_per_class or 10**9) * len(KNOWN[ext.name].classes)
            n += sum(min(c, cap) for c in per_split)
    return n


def _share_trained(cell: Cell) -> float:
    """partial / gradual: the share of block groups that train (gradual: averaged over epochs)."""
    groups = max(1, len(registry.get(cell.model.name).groups))
    if cell.strategy.name == "partial":
        return min(cell.strategy.blocks, groups) / groups
    epochs = cell.training.epochs
    trained = [strategies.trainable_groups(cell.strategy, groups, e) for e in range(epochs)]
    return sum(trained) / (groups * epochs)


def _explain_passes(cell: Cell, classes: int) -> tuple[float, float]:
    """(training-step passes, forward passes) the explanations cost."""
    ex = cell.explain
    if not ex.methods:
        return 0.0, 0.0
    images = ex.per_class * classes
    cams = sum(m != "lime" for m in ex.methods)
    steps = cams * images
    forwards = ("lime" in ex.methods) * ex.lime_samples * images
    if ex.faithfulness:
        forwards += FAITHFULNESS_PASSES * len(ex.methods) * images
    twice = 2 if ex.randomisation != "none" else 1
    return steps * twice, forwards * twice


def reuses_features(cell: Cell) -> bool:
    return (strategies.backbone_always_frozen(cell.strategy) and not cell.augment.active
            and cell.training.feature_reuse) or cell.strategy.name == "knn"


def cell_cost(cell: Cell, rates: dict, n: Sizes) -> dict:
    """Images x epochs and (low, mid, high) seconds of one cell at the given rates."""
    fwd, train = rates["forward"], rates["train"]
    epochs = 0 if cell.strategy.name == "knn" else cell.training.epochs
    earliest = min(epochs, cell.training.patience + 1) if cell.training.patience else epochs
    robust = cell.robustness
    tests = n.test * (1 + (len(robust.artefacts) * len(robust.severities) if robust else 0))
    tests += _external_images(cell)
    steps, forwards = _explain_passes(cell, n.classes)
    out = {"images_x_epochs": n.train * epochs, "epochs": epochs,
           "path": "feature reuse" if reuses_features(cell) else "end to end"}
    secs = []
    for i, (e, overhead) in enumerate(((earliest, SETUP[0]), (epochs, SETUP[1]),
                                       (epochs, SETUP[2]))):
        f, t = fwd[i], train[i]
        if reuses_features(cell):
            work = (n.train + n.val) * f  # head epochs on stored features: next to nothing
        elif strategies.backbone_always_frozen(cell.strategy):  # frozen, augmented: recomputed
            work = e * (n.train + n.val) * f
        else:
            share = 1.0 if cell.strategy.name in ("scratch", "full") else _share_trained(cell)
            step = (f if i == 0 and share < 1 else t if i == 2 else f + share * (t - f))
            work = e * (n.train * step + n.val * f)
        work += tests * f + steps * t + forwards * f
        secs.append(work * (PIPELINE if i == 2 else 1.0) + overhead)
    out["seconds"] = secs
    return out


def estimate(cells: list[Cell], device: str, data_dir: str | None,
             cache_dir: str | None = None, fresh: bool = False) -> dict:
    """Per group of cells (dataset, model, strategy; seeds, folds and axes together) and for
    the suite: images x epochs and seconds [low, mid, high]; the calibration behind them."""
    groups: dict[tuple, dict] = defaultdict(lambda: {"cells": 0, "images_x_epochs": 0,
                                                     "seconds": [0.0, 0.0, 0.0], "unknown": 0})
    loads: list[float | None] = []
    measured: set[tuple] = set()
    for cell in cells:
        g = groups[(cell.dataset.name, cell.model.display, cell.strategy.display)]
        g["cells"] += 1
        n = sizes(cell.dataset, cell.split, data_dir)
        if n is None:
            g["unknown"] += 1
            continue
        pre = cell.preprocess
        batch = calibrate.batch_for(cell.training.batch_size, device)
        key = (cell.model.name, cell.model.head.type, pre.image_size, pre.channels, batch,
               cell.training.precision)
        # --recalibrate measures each (model, size) once in this dry run, then reads the cache
        rates = calibrate.rates(cell.model, pre.image_size, pre.channels, batch, n.classes,
                                device, cell.training.precision, cache_dir,
                                fresh and key not in measured)
        measured.add(key)
        loads.append(rates.get("load"))
        cost = cell_cost(cell, rates, n)
        g["images_x_epochs"] += cost["images_x_epochs"]
        g["path"] = cost["path"]
        g["seconds"] = [a + b for a, b in zip(g["seconds"], cost["seconds"])]
        g["size"] = pre.image_size
    rows = []
    for (dataset, model, strategy), g in groups.items():
        low, mid, high = g["seconds"]
        rows.append({"dataset": dataset, "model": model, "strategy": strategy,
                     "cells": g["cells"], "px": g.get("size"), "path": g.get("path", "?"),
                     "images_x_epochs": g["images_x_epochs"], "seconds": round(mid, 1),
                     "low_seconds": round(low, 1), "high_seconds": round(high, 1),
                     "unknown_cells": g["unknown"]})
    total = [sum(r[k] for r in rows) + start for k, start in
             zip(("low_seconds", "seconds", "high_seconds"), STARTUP)]
    return {"device": calibrate.describe(device), "rows": rows, "cells": len(cells),
            "images_x_epochs": sum(r["images_x_epochs"] for r in rows),
            "seconds": round(total[1], 1), "low_seconds": round(total[0], 1),
            "high_seconds": round(total[2], 1),
            "unknown_cells": sum(r["unknown_cells"] for r in rows), "how": HOW,
            "calibration_load": max((x for x in loads if x is not None), default=None),
            "load_now": calibrate.load(), "cores": os.cpu_count()}


def duration(seconds: float) -> str:
    """3 h 05 min, 12 min 30 s, 45 s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
