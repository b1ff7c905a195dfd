"""What a suite will cost before it runs: images x epochs per cell and wall time on this machine,
from the calibrated rates (run/calibrate.py) and the cell's own split sizes, epochs and passes.

A cell's seconds, per image-pass at the rates calibrated for its (model, size, strategy) at its
own batch size (capped on CPU; run/calibrate.py):
- end to end (scratch, full, partial, a frozen backbone with augmentation): every epoch trains on
  the training images with the strategy's own step (partial N: backward through the last N
  block groups only) and evaluates the validation images forward; gradual lies between a
  forward pass and a full step, interpolated by the share of block groups that train;
- feature reuse (frozen / linear_probe without augmentation) and kNN: ONE forward pass over
  train + validation (not epochs x passes), then head epochs on the stored feature vectors at
  the calibrated head rate (microseconds per image);
- then the test set (and each external set, each robustness artefact x severity) once forward,
  explanations per explained image (a CAM: a training step; LIME: lime_samples forward passes;
  faithfulness adds ~40 forward passes per map; the randomisation check doubles them).
The range: fastest calibrated batch, early stopping at its earliest (patience + 1 epochs), and
5 s per cell of set-up and logging, up to the slowest calibrated batch x 1.2 (the input
pipeline: docs/speed.md measured real epochs at 0.86-0.98 of synthetic throughput), every
epoch run, and 60 s per cell (SETUP; plus STARTUP once per invocation); on a busy machine at
least 1 / BUSY_SPREAD to BUSY_SPREAD x the central figure. Decoding images on
first use is costed apart (run/decode_cost.py: a measured rate x the images of each image set
whose pixel store is cold) and added to the suite's total. Not included: the robust-copy audit
of `dedup: robust` (once per dataset, then cached) and weight downloads.
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
from mribench.run import calibrate, decode_cost

PIPELINE = 1.2  # the high end's allowance for the input pipeline (see the docstring)
# seconds per cell for building the model, logging to MLflow, figures and saving the model: low
# / mid / high (a smoke cell of 24 images took 35 s here at load ~17, a reference cell of 202
# images 13 s at load ~3, almost all of it this), and once per invocation for imports and
# opening the store
SETUP = (5.0, 15.0, 60.0)
STARTUP = (10.0, 30.0, 90.0)
FAITHFULNESS_PASSES = 40
# on a busy machine (load average above 0.8 x cores at calibration) the range spans at least
# this factor either side of the central figure: the same forward pass ran at 0.038 and 0.17 s
# per image five minutes apart on the shared 2-core development machine (2026-12-07), and cells
# of the reference suite ran 0.5-0.9x their estimate as the others' load fell, while a
# calibration's rounds span only the half minute it ran
BUSY_SPREAD = 2.0
HOW = ("range: fastest calibrated batch, earliest early stop and 5 s of set-up and logging per "
       "cell, to the slowest batch x 1.2 (input pipeline), every epoch and 60 s per cell; on a "
       "busy machine at least 0.5-2x the central figure; "
       "decoding cold image sets included (0.5-2x the sampled rate); the robust-copy audit "
       "(dedup: robust) and weight downloads not included")


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
    if cell.strategy.name == strategies.PARTIAL.name:
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


def _neighbours(cell: Cell) -> bool:
    """kNN: a neighbour index on features, no epochs."""
    return strategies.spec_of(cell.strategy).fit == strategies.NEIGHBOURS


def reuses_features(cell: Cell) -> bool:
    return (strategies.backbone_always_frozen(cell.strategy) and not cell.augment.active
            and cell.training.feature_reuse) or _neighbours(cell)


def train_strategy(cell: Cell):
    """The strategy whose training step is calibrated: None where no step runs through the
    network (feature reuse: one forward pass, then the head on stored features)."""
    return None if reuses_features(cell) else cell.strategy


def cell_cost(cell: Cell, rates: dict, n: Sizes) -> dict:
    """Images x epochs and (low, mid, high) seconds of one cell at the given rates: forward,
    head and (end to end) train, each [fastest, median, slowest] seconds per image at the
    cell's batch size, the train step measured with the cell's own strategy."""
    fwd, head = rates["forward"], rates.get("head", [0.0, 0.0, 0.0])
    train = rates.get("train")
    epochs = 0 if _neighbours(cell) else cell.training.epochs
    earliest = min(epochs, cell.training.patience + 1) if cell.training.patience else epochs
    robust = cell.robustness
    tests = n.test * (1 + (len(robust.artefacts) * len(robust.severities) if robust else 0))
    tests += _external_images(cell)
    steps, forwards = _explain_passes(cell, n.classes)
    reuse = reuses_features(cell)
    out = {"images_x_epochs": n.train * epochs, "epochs": epochs,
           "path": "feature reuse" if reuse else "end to end",
           "forward_images": (n.train + n.val if reuse else 0) + tests + forwards}
    secs = []
    for i, (e, overhead) in enumerate(((earliest, SETUP[0]), (epochs, SETUP[1]),
                                       (epochs, SETUP[2]))):
        f, h = fwd[i], head[i]
        if reuse:  # one forward pass over train + validation, then head epochs on features
            work = (n.train + n.val) * f + e * (n.train + n.val) * h
        else:
            if strategies.spec_of(cell.strategy).steps:  # gradual: between a forward pass and a full step
                share = _share_trained(cell)
                t = f if i == 0 else train[i] if i == 2 else f + share * (train[i] - f)
            else:  # measured with the cell's own strategy (partial: its trained blocks)
                t = train[i]
            work = e * (n.train * t + n.val * f)
        # test and external sets once forward; CAMs need a backward pass through the whole
        # network: bounded by the train step (a full one for end-to-end cells)
        work += tests * f + steps * (train[i] if train else 3 * f) + forwards * f
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
               cell.training.precision, calibrate.strategy_key(train_strategy(cell)))
        # --recalibrate measures each (model, size) once in this dry run, then reads the cache
        rates = calibrate.rates(cell.model, pre.image_size, pre.channels, batch, n.classes,
                                device, cell.training.precision, cache_dir,
                                fresh and key not in measured, train_strategy(cell))
        measured.add(key)
        loads.append(rates.get("load"))
        cost = cell_cost(cell, rates, n)
        g["images_x_epochs"] += cost["images_x_epochs"]
        g["path"] = cost["path"]
        g["seconds"] = [a + b for a, b in zip(g["seconds"], cost["seconds"])]
        g["size"] = pre.image_size
        g["batch"] = batch
    load = max((x for x in loads if x is not None), default=None)
    busy = load is not None and load > 0.8 * (os.cpu_count() or 1)
    rows = []
    for (dataset, model, strategy), g in groups.items():
        low, mid, high = g["seconds"]
        if busy:  # the others' load will change during the run, either way: see BUSY_SPREAD
            low, high = min(low, mid / BUSY_SPREAD), max(high, BUSY_SPREAD * mid)
        rows.append({"dataset": dataset, "model": model, "strategy": strategy,
                     "cells": g["cells"], "px": g.get("size"), "batch": g.get("batch"),
                     "path": g.get("path", "?"),
                     "images_x_epochs": g["images_x_epochs"], "seconds": round(mid, 1),
                     "low_seconds": round(low, 1), "high_seconds": round(high, 1),
                     "unknown_cells": g["unknown"]})
    # decoding on first use: measured per cold pixel store, in the total (a warm cache costs 0);
    # the range: half to twice the sampled rate (file sizes vary, so does the machine's load)
    decoding = decode_cost.stores(cells, data_dir, cache_dir)
    decode_s = sum(d["seconds"] for d in decoding)
    total = [sum(r[k] for r in rows) + start + decode_s * scale for k, start, scale in
             zip(("low_seconds", "seconds", "high_seconds"), STARTUP, (0.5, 1.0, 2.0))]
    return {"device": calibrate.describe(device), "rows": rows, "cells": len(cells),
            "images_x_epochs": sum(r["images_x_epochs"] for r in rows),
            "seconds": round(total[1], 1), "low_seconds": round(total[0], 1),
            "high_seconds": round(total[2], 1),
            "unknown_cells": sum(r["unknown_cells"] for r in rows), "how": HOW,
            "decoding": decoding, "decode_seconds": round(decode_s, 1),
            "robust_audits": decode_cost.robust_audits(cells, data_dir, cache_dir),
            "calibration_load": load,
            "load_now": calibrate.load(), "cores": os.cpu_count()}


def duration(seconds: float) -> str:
    """3 h 05 min, 12 min 30 s, 45 s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
