"""Run one cell, the recipe: data -> model + weights -> strategy -> fit -> score (scoring.py)
-> explain (explaining.py) -> keep (keeping.py).

Every step logs through `tracking` into the cell's (already started) nested MLflow run, at the
paths run/layout.py names.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import yaml

from mribench import data, tracking
from mribench.console import console
from mribench.matrix import Cell, flatten
from mribench.models import strategies
from mribench.models.build import build
from mribench.models.registry import IMAGENET_MEAN, IMAGENET_STD
from mribench.report import run_figures as plots
from mribench.robustness.evaluate import evaluate_robustness
from mribench.run import (
    calibrated,
    composition,
    explaining,
    external,
    keeping,
    layout,
    protocols,
    scoring,
    shortcut_log,
    two_stage,
)
from mribench.stats import metrics
from mribench.train import precision as fastpath
from mribench.train.engine import Diverged, Trainee, evaluate, fit
from mribench.train.features import FeatureStore, feature_stage


@dataclass(frozen=True)
class RunOptions:
    device: str = "cpu"
    data_dir: str | None = None
    cache_dir: str | None = None
    on_epoch: Callable[[dict, int], None] | None = None  # (epoch's metrics row, epochs)
    evaluate_test: bool = True  # tuning trials select on validation only: no test, no explain
    # prepared datasets of this invocation, shared by its cells (files do not change meanwhile)
    prepared: dict = field(default_factory=dict, compare=False, hash=False)
    on_batch: Callable[[int, int], None] | None = None  # (batch, batches)
    on_stage: Callable[[str], None] | None = None  # what the cell is doing now, in words


def _stage(opts: RunOptions, what: str) -> None:
    if opts.on_stage:
        opts.on_stage(what)


def prepare_once(cell: Cell, opts: RunOptions):
    """The cell's dataset split, scanned, validated and audited once per invocation."""
    key = (cell.dataset, cell.split, cell.preprocess, cell.seed, cell.fold)
    if key not in opts.prepared:
        prepared = data.prepare(cell.dataset, cell.split, cell.preprocess, seed=cell.seed,
                                fold=cell.fold, data_dir=opts.data_dir, cache_dir=opts.cache_dir)
        opts.prepared[key] = prepared
        a = prepared.audit
        console.print(f"split {cell.split.protocol} (seed {cell.seed}"
                      + ("" if cell.fold is None else f", fold {cell.fold}") + f"): "
                      f"{a['split_groups_kept_together']} of {a['split_groups']} duplicate groups "
                      f"({a['split_group_kind']}) kept on one side"
                      + (f", {a['split_groups_separated']} separated by the official folders"
                         if a["split_groups_separated"] else "")
                      + f"; clean test {a['n_clean_test']} of {a['n_test']}"
                      + (f"; train {a['n_train']} of {a['n_train_available']} "
                         f"(train_per_class {cell.dataset.train_per_class})"
                         if "n_train_available" in a else "")
                      + f"; {composition.split_note(prepared)}", markup=False, highlight=False)
        for line in composition.warnings(prepared, cell.dataset.name):
            console.print(f"warning: {line}", style="yellow", markup=False, highlight=False)
        if prepared.skipped:  # on_bad_image: skip: say so here, not only in an artifact
            console.print(f"dataset {cell.dataset.name}: {len(prepared.skipped)} bad file(s) "
                          "skipped (on_bad_image: skip), listed in each cell run's "
                          f"{layout.SKIPPED_FILES}")
    return opts.prepared[key]


def prepare_externals(cell: Cell, opts: RunOptions) -> list:
    """The cell's external test sets, decoded at its preprocessing and label maps checked
    against its classes, once per invocation (the suite's preflight calls this first)."""
    prepared = prepare_once(cell, opts)
    out = []
    for cfg in cell.dataset.external:
        key = ("external", cfg, cell.preprocess, tuple(prepared.classes))
        if key not in opts.prepared:
            opts.prepared[key] = external.prepare_external(cfg, cell.preprocess,
                                                           prepared.classes, opts.data_dir)
        out.append(opts.prepared[key])
    return out


def normalisation(cell: Cell, spec) -> tuple[tuple, tuple]:
    if cell.preprocess.normalize == "unit":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if cell.preprocess.normalize == "raw":  # 0-255, as decoded
        return (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)
    if cell.preprocess.normalize == "model":
        return tuple(spec.mean), tuple(spec.std)
    return IMAGENET_MEAN, IMAGENET_STD


def run_cell(cell: Cell, opts: RunOptions) -> dict[str, float]:
    """Train and evaluate one cell; returns its best validation and headline test metrics."""
    wall = time.perf_counter()
    torch.manual_seed(cell.seed)
    if opts.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(opts.device)
    resolved = cell.resolved()
    tracking.log_params(flatten(resolved))
    tracking.log_text(yaml.safe_dump(resolved, sort_keys=False), layout.RESOLVED_CONFIG)

    _stage(opts, "preparing data")
    prepared = prepare_once(cell, opts)
    externals = prepare_externals(cell, opts) if opts.evaluate_test else []
    _log_data(prepared, opts.evaluate_test)

    built = build(cell.model, cell.strategy, num_classes=len(prepared.classes),
                  in_chans=cell.preprocess.channels, image_size=cell.preprocess.image_size)
    fastpath.place(built.model, opts.device)
    mean, std = normalisation(cell, built.spec)
    tracking.log_params(built.info)
    if built.spec.fixed_size:  # a ViT / Swin at another size: say how it was handled
        tracking.set_tags({"input_size_handling": built.info["input_size_handling"]})
        console.print(f"{cell.title}: {built.info['input_size_handling']}", markup=False,
                      highlight=False)
    precision = fastpath.Precision.of(cell.training.precision, opts.device)
    workers = fastpath.workers(cell.training.num_workers, opts.device)
    tracking.log_params({"precision_resolved": precision.name, "num_workers_resolved": workers,
                         "channels_last": fastpath.channels_last(opts.device),
                         **fastpath.configure(cell.training.deterministic, opts.device)})

    loader = _loaders(cell, prepared, mean, std, opts.device, workers)
    # how the strategy fits (its row in models/strategies.py): the loop, or a neighbour index
    fit_kind = strategies.spec_of(cell.strategy).fit
    _stage(opts, "kNN: extracting features" if fit_kind == strategies.NEIGHBOURS
           else "loading images")
    fits = {strategies.LOOP: _train, strategies.NEIGHBOURS: protocols.fit_knn,
            strategies.PROBE_THEN_LOOP: partial(two_stage.fit_lp_ft, _train)}
    train = fits[fit_kind]
    fit_start = time.perf_counter()
    result, net, predict_loader = train(cell, built, prepared, loader, opts, precision)
    tracking.log_metrics({"fit_seconds": time.perf_counter() - fit_start})
    strategies.deploy(built, result)  # lora: its adapters merged into the weights

    best = (result.history[result.best_epoch - 1] if result.best_epoch else
            result.history[-1] if result.history else result.validation)  # knn: no epochs
    headline = {"val_loss_best": best["val_loss"], "val_acc_best": best["val_acc"]}
    if opts.evaluate_test:
        # post-hoc temperature scaling, fitted on the validation split (run/calibrated.py)
        temperature = calibrated.fit(net, prepared, predict_loader, opts.device, precision)
        _stage(opts, "testing")
        headline |= scoring.score_test(net, prepared, predict_loader, opts.device, precision,
                                       temperature)
        # MRI artefacts: the whole model (backbone too) on corrupted test images
        headline |= evaluate_robustness(cell, built.model, prepared, mean, std, opts.device,
                                        precision, headline, temperature)
        for ext in externals:
            headline |= external.evaluate_external(ext, prepared, net, predict_loader,
                                                   opts.device, temperature)
        if cell.explain.methods:
            _stage(opts, "explaining")
            explaining.explain_cell(cell, built, prepared, mean, std, opts.device)
        headline |= keeping.keep_model(cell, built, prepared, net, mean, std, result,
                                       temperature)
    keeping.close_checkpoints(cell, opts.cache_dir)
    headline["wall_seconds"] = time.perf_counter() - wall
    tracking.log_metrics({"wall_seconds": headline["wall_seconds"],
                          **(epoch_seconds(result.history, cell.training.compile)
                             if result.history else {}),
                          **metrics.peak_memory(opts.device)})
    return headline


def epoch_seconds(history: list[dict], compiled: bool) -> dict[str, float]:
    """Seconds per epoch (train + validation). With torch.compile the first epoch pays for the
    compilation, so `seconds_per_epoch` is then the steady state (epochs after the first) and
    `compile_seconds` what the first epoch cost on top of it."""
    seconds = [r["train_seconds"] + r["eval_seconds"] for r in history]
    out = {"first_epoch_seconds": seconds[0]}
    if compiled and len(seconds) > 1:
        steady = sum(seconds[1:]) / len(seconds[1:])
        return out | {"seconds_per_epoch": steady, "compile_seconds": seconds[0] - steady}
    return out | {"seconds_per_epoch": sum(seconds) / len(seconds)}


def _train(cell: Cell, built, prepared, loader, opts: RunOptions, precision, stage: str = "",
           first_step: int = 0):
    """Fit the trainable part, logging every epoch. Returns the fit, the trained network and
    how to feed it any samples (images, or their stored features on the feature-reuse path).
    A stage of a two-stage strategy (run/two_stage.py) logs its epochs from `first_step` + 1 and
    its summary metrics and learning curves with the `stage` prefix."""
    cfg = cell.training
    reuse = built.frozen_backbone and not cell.augment.active and cfg.feature_reuse
    tracking.set_tags({"training_path": "feature_reuse" if reuse else "end_to_end"})
    splits = ("train", "val", "test") if cfg.peek_test else ("train", "val")
    if reuse:
        # The frozen backbone (eval mode, no augmentation) maps each image to the same features
        # every epoch: compute them once (pooled when the head starts by pooling) and train only
        # the rest of the head; test and external sets reuse the same store.
        t0 = time.perf_counter()
        _stage(opts, "extracting features")
        extractor, net = feature_stage(built.backbone, built.head)
        store = FeatureStore(extractor, lambda samples: loader("test", False, samples),
                             opts.device, cfg.batch_size, cell.seed)
        loaders = {name: store.loader(prepared.splits[name], name == "train") for name in splits}
        tracking.log_metrics({"feature_extraction_seconds": time.perf_counter() - t0})
        tracking.set_tags({"cached_feature_shape": "x".join(map(str, store.feature_shape))})
        set_train = net.train

        def predict_loader(samples):
            return store.loader(samples, False)
    else:
        loaders = {name: loader(name, name == "train") for name in splits}
        net, set_train = built.model, built.train

        def predict_loader(samples):
            return loader("test", False, samples)
    # a killed run of this cell left a checkpoint: training resumes from it (run/keeping.py)
    ckpt = keeping.open_checkpoints(cell, opts.cache_dir, cfg.epochs, first_step, net) \
        if opts.evaluate_test else None
    peeked: list[float] = ckpt.extra.setdefault("peeked", []) if ckpt else []

    def on_epoch(row: dict) -> None:
        if "test" in loaders:
            peeked.append(evaluate(trained, loaders["test"], torch.nn.CrossEntropyLoss(),
                                   opts.device, precision=precision)["acc"])
            row = {**row, "test_acc_epoch_peeking": peeked[-1]}
        row = {**row, "epoch": row["epoch"] + first_step}
        tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        if opts.on_epoch:
            opts.on_epoch(row, cfg.epochs + first_step)

    _stage(opts, "epochs")
    # torch.compile wraps (shares the parameters of) the module: explanations use the plain one
    trained = torch.compile(net) if cfg.compile else net
    try:
        result = fit(Trainee(trained, set_train, lambda: built.param_groups(cfg.lr, cfg.backbone_lr,
                                                                         cfg.layer_decay),
                             built.on_epoch_start), loaders["train"], loaders["val"], cfg, opts.device,
                     on_epoch=on_epoch, on_batch=opts.on_batch, precision=precision, ckpt=ckpt,
                     keep_last=cell.artifacts.model == "last")
    except Diverged as err:
        keeping.close_checkpoints(cell, opts.cache_dir)  # resuming would diverge the same way
        tracking.set_tags({"failure": "diverged"})
        tracking.log_metrics({"diverged_epoch": err.epoch, "diverged_lr": err.lr or 0.0,
                              **({"diverged_batch": err.batch} if err.batch else {})})
        raise
    tracking.log_metrics({f"{stage}best_epoch": result.best_epoch,
                          f"{stage}epochs_run": len(result.history),
                          f"{stage}stopped_early": int(result.stopped_early),
                          f"{stage}optimizer_state_mb": result.optimizer_state_mb})
    if peeked:  # Study B's "best accuracy" (best test accuracy over epochs, named as a peek)
        # and its "final accuracy" (the last epoch's weights, not the best-validation ones)
        tracking.log_metrics({"test_best_epoch_accuracy_peeking": max(peeked),
                              "test_last_epoch_accuracy": peeked[-1]})
    tracking.log_figure(plots.learning_curves_figure(result.history),
                        layout.learning_curves_file(stage))
    return result, net, predict_loader


def _loaders(cell: Cell, prepared, mean, std, device: str, workers: int):
    def loader(split: str, train: bool, samples=None):
        return data.make_loader(samples if samples is not None else prepared.splits[split],
                                cell.preprocess, cell.augment if train else None, mean=mean,
                                std=std, batch_size=cell.training.batch_size, shuffle=train,
                                seed=cell.seed, num_workers=workers, device=device,
                                channels_last=fastpath.channels_last(device))
    return loader


def _log_data(prepared, with_test: bool) -> None:
    tracking.log_params({"classes": prepared.classes,
                         **{f"n_{k}": len(v) for k, v in prepared.splits.items()}})
    tracking.log_split(prepared.split_rows(), prepared.digest(), prepared.name)
    if prepared.audit:
        tracking.log_dict(prepared.audit, layout.AUDIT_SUMMARY)
        tracking.log_params({k: v for k, v in prepared.audit.items() if k.startswith("split_")})
        if with_test:  # a tuning trial logs nothing about the test split
            tracking.log_metrics({"test_leaked_near": prepared.audit["near_test_files_leaked"],
                                  "test_leaked_exact": prepared.audit["exact_test_files_leaked"],
                                  **({"test_leaked_robust": prepared.audit["robust_test_files_leaked"]}
                                     if "robust_test_files_leaked" in prepared.audit else {})})
    if with_test:  # images per class, duplicate groups and baselines of each scored subset
        tracking.log_dict(composition.describe(prepared), layout.COMPOSITION)
    shortcut_log.log(prepared, with_test)
    if prepared.skipped:
        tracking.log_text("path,reason\n" + "\n".join(f"{p},{r}" for p, r in prepared.skipped),
                          layout.SKIPPED_FILES)
