"""Run one cell: data -> model + weights -> strategy -> train/eval -> metrics -> explanations.

Every step logs through `tracking` into the cell's (already started) nested MLflow run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import yaml

from mribench import data, explain, fastpath, metrics, plots, tracking
from mribench.engine import Diverged, FitResult, evaluate, extract_features, fit
from mribench.matrix import Cell, flatten
from mribench.models.build import build
from mribench.models.registry import IMAGENET_MEAN, IMAGENET_STD


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


def prepare_once(cell: Cell, opts: RunOptions):
    """The cell's dataset split, scanned, validated and audited once per invocation."""
    key = (cell.dataset, cell.split, cell.preprocess, cell.seed, cell.fold)
    if key not in opts.prepared:
        opts.prepared[key] = data.prepare(cell.dataset, cell.split, cell.preprocess,
                                          seed=cell.seed, fold=cell.fold,
                                          data_dir=opts.data_dir, cache_dir=opts.cache_dir)
    return opts.prepared[key]


def normalisation(cell: Cell, spec) -> tuple[tuple, tuple]:
    if cell.preprocess.normalize == "unit":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
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
    tracking.log_text(yaml.safe_dump(resolved, sort_keys=False), "config/resolved.yaml")

    prepared = prepare_once(cell, opts)
    _log_data(prepared)

    built = build(cell.model, cell.strategy, num_classes=len(prepared.classes),
                  in_chans=cell.preprocess.channels, image_size=cell.preprocess.image_size)
    fastpath.place(built.model, opts.device)
    mean, std = normalisation(cell, built.spec)
    tracking.log_params(built.info)
    precision = fastpath.Precision.of(cell.training.precision, opts.device)
    workers = fastpath.workers(cell.training.num_workers, opts.device)
    tracking.log_params({"precision_resolved": precision.name, "num_workers_resolved": workers,
                         "channels_last": fastpath.channels_last(opts.device),
                         **fastpath.configure(cell.training.deterministic, opts.device)})

    loader = _loaders(cell, prepared, mean, std, opts.device, workers)
    result = _train(cell, built, loader, opts, precision)

    best = result.history[result.best_epoch - 1] if result.best_epoch else result.history[-1]
    headline = {"val_loss_best": best["val_loss"], "val_acc_best": best["val_acc"]}
    if opts.evaluate_test:
        headline |= _test(built.model, prepared, loader, opts.device, precision)
        if cell.explain.methods:
            _explain(cell, built, prepared, mean, std, opts.device)
    headline["wall_seconds"] = time.perf_counter() - wall
    tracking.log_metrics({"wall_seconds": headline["wall_seconds"],
                          **epoch_seconds(result.history, cell.training.compile),
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


def _train(cell: Cell, built, loader, opts: RunOptions, precision) -> FitResult:
    """Fit the trainable part, logging every epoch; frozen backbones train on reused features."""
    cfg = cell.training
    reuse = built.frozen_backbone and not cell.augment.active
    tracking.set_tags({"training_path": "feature_reuse" if reuse else "end_to_end"})
    splits = ("train", "val", "test") if cfg.peek_test else ("train", "val")
    if reuse:
        # The frozen backbone (eval mode, no augmentation) maps each image to the same features
        # every epoch: compute them once per split and train only the head.
        t0 = time.perf_counter()
        loaders = {name: extract_features(built.backbone, loader(name, name == "train"),
                                          opts.device, cfg.batch_size, name == "train", cell.seed,
                                          precision)
                   for name in splits}
        tracking.log_metrics({"feature_extraction_seconds": time.perf_counter() - t0})
        net, set_train = built.head, built.head.train
    else:
        loaders = {name: loader(name, name == "train") for name in splits}
        net, set_train = built.model, built.train
    peeked: list[float] = []

    def on_epoch(row: dict) -> None:
        if "test" in loaders:
            peeked.append(evaluate(trained, loaders["test"], torch.nn.CrossEntropyLoss(),
                                   opts.device, precision=precision)["acc"])
            row = {**row, "test_acc_epoch_peeking": peeked[-1]}
        tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        if opts.on_epoch:
            opts.on_epoch(row, cfg.epochs)

    # torch.compile wraps (shares the parameters of) the module: explanations use the plain one
    trained = torch.compile(net) if cfg.compile else net
    try:
        result = fit(trained, set_train, lambda: built.param_groups(cfg.lr, cfg.backbone_lr),
                     built.on_epoch_start, loaders["train"], loaders["val"], cfg, opts.device,
                     on_epoch=on_epoch, on_batch=opts.on_batch, precision=precision)
    except Diverged as err:
        tracking.set_tags({"failure": "diverged"})
        tracking.log_metrics({"diverged_epoch": err.epoch, "diverged_lr": err.lr or 0.0,
                              **({"diverged_batch": err.batch} if err.batch else {})})
        raise
    tracking.log_metrics({"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                          "stopped_early": int(result.stopped_early)})
    if peeked:  # Study B's "best accuracy": best test accuracy over epochs, named as a peek
        tracking.log_metrics({"test_best_epoch_accuracy_peeking": max(peeked)})
    tracking.log_figure(plots.learning_curves_figure(result.history), "plots/learning_curves.png")
    return result


def _loaders(cell: Cell, prepared, mean, std, device: str, workers: int):
    def loader(split: str, train: bool, samples=None):
        return data.make_loader(samples if samples is not None else prepared.splits[split],
                                cell.preprocess, cell.augment if train else None, mean=mean,
                                std=std, batch_size=cell.training.batch_size, shuffle=train,
                                seed=cell.seed, num_workers=workers, device=device,
                                channels_last=fastpath.channels_last(device))
    return loader


def _log_data(prepared) -> None:
    tracking.log_params({"classes": prepared.classes,
                         **{f"n_{k}": len(v) for k, v in prepared.splits.items()}})
    tracking.log_split(prepared.split_rows(), prepared.digest(), prepared.name)
    if prepared.audit:
        tracking.log_dict(prepared.audit, "data/audit_summary.json")
    if prepared.skipped:
        tracking.log_text("path,reason\n" + "\n".join(f"{p},{r}" for p, r in prepared.skipped),
                          "data/skipped_files.csv")


def _test(model, prepared, loader, device, precision) -> dict[str, float]:
    """Test metrics of the restored best-validation checkpoint, on the test split only."""
    loss_fn = torch.nn.CrossEntropyLoss()
    out = {}
    subsets = {"test": prepared.splits["test"]}
    if prepared.clean_test:  # None: no dedup; empty: every test image leaked (audit says so)
        subsets["test_clean"] = prepared.clean_test
    for prefix, samples in subsets.items():
        ev = evaluate(model, loader("test", False, samples), loss_fn, device, precision=precision)
        y, probs = ev["targets"], ev["probs"]
        scores = metrics.compute(y, probs, prepared.classes)
        tracking.log_metrics({f"{prefix}_{k}": v for k, v in scores.items()}
                             | {f"{prefix}_loss": ev["loss"]})
        out[f"{prefix}_accuracy"] = scores["accuracy"]
        if prefix != "test":
            continue
        pred = probs.argmax(1)
        report, text = metrics.report(y, pred, prepared.classes)
        tracking.log_dict(report, "metrics/classification_report.json")
        tracking.log_text(text, "metrics/classification_report.txt")
        cm = metrics.confusion(y, pred, prepared.classes)
        tracking.log_frame(cm, "metrics/confusion_matrix.csv", index=True)
        tracking.log_figure(plots.confusion_figure(cm, normalize=False),
                            "plots/confusion_matrix.png")
        tracking.log_figure(plots.confusion_figure(cm, normalize=True),
                            "plots/confusion_matrix_normalized.png")
        paths = [prepared.relative(s.path) for s in samples]  # pairs across machines
        tracking.log_frame(metrics.predictions_frame(paths, y, probs, prepared.classes),
                           "metrics/predictions.csv")
    return out


def _explain(cell: Cell, built, prepared, mean, std, device) -> None:
    test = prepared.splits["test"]
    picks = explain.select_images([s.label for s in test], len(prepared.classes),
                                  cell.explain.per_class, cell.explain.seed)
    chosen = [test[i] for i in picks]
    raw = [data.load_image(s.path, cell.preprocess) for s in chosen]
    batch = next(iter(data.make_loader(chosen, cell.preprocess, None, mean=mean, std=std,
                                       batch_size=len(chosen), shuffle=False, seed=cell.seed)))
    result = explain.explain(built.model, built.gradcam_layer(), raw, batch[0],
                             [s.label for s in chosen], prepared.classes, cell.explain, device)
    tracking.log_metrics(result.metrics)
    for method, fig in result.figures.items():
        tracking.log_figure(fig, f"explanations/{method}.png")
