"""`fit`: train for `training.epochs` with early stopping, resuming from a checkpoint.

The pieces it drives have their own modules: one training pass (epoch.py, with `Diverged`), an
evaluation pass (evaluation.py), the optimizer and schedule (optim.py), and where training
stands between epochs (`FitState`, saved by and resumed from checkpoints.py); they stay
importable from here. The same code runs on CPU and CUDA, in the precision `precision.Precision`
resolves. `fit` keeps the best-validation weights and restores them at the end, so every test
metric is computed on them, once. Divergence (a non-finite loss, or one past
`training.max_loss`) stops training at once with `Diverged`, which fails the cell.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mribench.config.schema import TrainingConfig
from mribench.train import checkpoints
from mribench.train.checkpoints import Checkpoints, FitState, MidEpoch
from mribench.train.epoch import BatchHook, Diverged, train_one_epoch
from mribench.train.evaluation import evaluate
from mribench.train.features import compute_features, extract_features, feature_loader  # noqa: F401
from mribench.train.optim import add_new_params, make_optimizer, make_scheduler
from mribench.train.precision import Precision, resolve_device  # noqa: F401


@dataclass
class Trainee:
    """What `fit` trains, and how its strategy drives it."""
    net: nn.Module
    set_train: Callable[[], None]  # training mode (a frozen backbone's batch-norm stays in eval)
    # the trainable groups, named "backbone" / "head" (lr_backbone is 0 while it is frozen)
    param_groups: Callable[[], list[dict]]
    # at each epoch (0-based): True when the trainable set changed (gradual unfreezing), so the
    # new parameters join the optimizer
    on_epoch_start: Callable[[int], bool]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    last_state: dict | None = None  # the last epoch's weights, when fit was asked to keep them
    optimizer_state_mb: float = 0.0  # what the optimizer held at the end (Adam: 2 per parameter)


def fit(model: Trainee, train_loader: DataLoader, val_loader: DataLoader,
        cfg: TrainingConfig, device: str, on_epoch: Callable[[dict], None] | None = None,
        on_batch: BatchHook | None = None, precision: Precision | None = None,
        ckpt: Checkpoints | None = None, keep_last: bool = False) -> FitResult:
    """Train `model.net` for cfg.epochs with early stopping on validation loss (see Trainee).

    The best-validation weights are restored before returning. A diverging loss (see
    `Diverged`) stops training at once and propagates, naming the epoch, batch and learning
    rate. With `ckpt` (see checkpoints.py) it resumes from `ckpt.saved` and writes a checkpoint
    every `ckpt.every` epochs.
    """
    net, param_groups, on_epoch_start = model.net, model.param_groups, model.on_epoch_start
    precision = precision or Precision.of(cfg.precision, device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(param_groups(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    state, stopped_early = FitState(), False
    if ckpt is not None and ckpt.saved is not None:
        state = FitState.from_saved(ckpt.saved)
        for done in range(state.epochs_begun):  # the same trainable set
            if on_epoch_start(done):
                add_new_params(optimizer, scheduler, param_groups())
        checkpoints.resume(ckpt, net, optimizer, scheduler, precision, train_loader)

    def snapshot(mid: MidEpoch | None = None) -> dict:
        loop = state.saved(checkpoints.rng_state(train_loader), mid)
        return checkpoints.snapshot(net, optimizer, scheduler, precision, loop)

    with checkpoints.deferred_signals(ckpt):
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if on_epoch_start(epoch - 1):  # strategies count epochs from 0
                add_new_params(optimizer, scheduler, param_groups())
            model.set_train()
            lrs = {g.get("name", "head"): g["lr"] for g in optimizer.param_groups}
            # the random state the epoch starts from: a mid-epoch checkpoint replays its order
            start = checkpoints.rng_state(train_loader) if ckpt is not None else None

            def partial(batch: int, sums: dict, start=start) -> dict:
                return snapshot(MidEpoch(batch, sums, start))
            resume, state.mid_epoch = state.mid_epoch, None
            try:
                tr = train_one_epoch(net, train_loader, optimizer, loss_fn, device, on_batch,
                                     precision, cfg.max_loss, cfg.max_loss_batches, ckpt, partial,
                                     resume)
            except Diverged as err:
                raise err.at(epoch, lrs.get("head", 0.0)) from None
            va = evaluate(net, val_loader, loss_fn, device, precision=precision)
            if not np.isfinite(va["loss"]):
                raise Diverged(va["loss"], epoch=epoch, lr=lrs.get("head", 0.0))
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                   "val_loss": va["loss"], "val_acc": va["acc"], "lr": lrs.get("head", 0.0),
                   "lr_backbone": lrs.get("backbone", 0.0), "train_seconds": tr["seconds"],
                   "eval_seconds": va["seconds"], "images_per_s": tr["images_per_s"]}
            state.history.append(row)
            if on_epoch:
                on_epoch(row)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(va["loss"])
            elif scheduler is not None:
                scheduler.step()
            if state.end_epoch(epoch, va["loss"], net.state_dict, cfg.patience):
                stopped_early = True
                break
            if ckpt is not None:
                if ckpt.due(epoch):
                    ckpt.write(snapshot())
                checkpoints.stop_if_signalled(ckpt, snapshot)
    result = FitResult(state.history, state.best_epoch, stopped_early)
    result.optimizer_state_mb = sum(t.numel() * t.element_size() for s in optimizer.state.values()
                                    for t in s.values() if torch.is_tensor(t)) / 2**20
    if keep_last:
        result.last_state = copy.deepcopy(checkpoints.plain(net).state_dict())
    if state.best_state is not None:
        net.load_state_dict(state.best_state)
    return result
