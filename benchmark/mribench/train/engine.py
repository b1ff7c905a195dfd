"""Training and evaluation as plain functions that return dicts; the caller logs.

The same code runs on CPU and CUDA, in the precision `fastpath.Precision` resolves. `fit` keeps the
best-validation checkpoint and restores it at the end, so every test metric is computed on the
restored checkpoint, once. Divergence (a non-finite loss, or one past `training.max_loss`) stops
training at once with `Diverged`, which fails the cell.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mribench.config.schema import TrainingConfig
from mribench.train import checkpoints
from mribench.train.checkpoints import Checkpoints
from mribench.train.precision import Precision

BatchHook = Callable[[int, int], None]  # (batches done, batches total)


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    return name


class Diverged(RuntimeError):
    """Training blew up: a non-finite loss, or one above `training.max_loss` for
    `training.max_loss_batches` consecutive batches or over a whole epoch. The cell fails."""

    def __init__(self, loss: float, batch: int | None = None, batches: int | None = None,
                 epoch: int | None = None, lr: float | None = None, bound: float | None = None,
                 window: int | None = None):
        self.loss, self.batch, self.batches, self.epoch, self.lr = loss, batch, batches, epoch, lr
        self.bound, self.window = bound, window
        super().__init__(str(self))

    def at(self, epoch: int, lr: float) -> "Diverged":
        return Diverged(self.loss, self.batch, self.batches, epoch, lr, self.bound, self.window)

    def __str__(self) -> str:
        where = (f"batch {self.batch} of {self.batches}" if self.batch is not None
                 else "the validation pass" if self.window is None else "the epoch's mean")
        why = (f"loss {self.loss:.4g}" if np.isfinite(self.loss)
               else f"non-finite loss ({self.loss})")
        bound = ""
        if np.isfinite(self.loss) and self.bound is not None:
            bound = f" above training.max_loss = {self.bound:g}"
            if self.batch is not None and self.window:
                bound += f" for {self.window} consecutive batches"
        lr = f" at learning rate {self.lr:g}" if self.lr is not None else ""
        return (f"training diverged at epoch {self.epoch}, {where}{lr}: {why}{bound}; lower "
                "training.lr (or raise training.max_loss)")


def sync_every(device: str) -> int:
    """Batches between reads of the device-side sums: a CPU has nothing to wait for; on CUDA each
    read stalls the queue, so it happens every few dozen steps (and at the end of the epoch)."""
    return 1 if str(device) == "cpu" else 25


def _check(first_bad: torch.Tensor, bad_loss: torch.Tensor, batches: int,
           max_loss: float | None, window: int) -> None:
    if int(first_bad) > 0:
        raise Diverged(float(bad_loss), int(first_bad), batches, bound=max_loss, window=window)


def train_one_epoch(net: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    loss_fn: nn.Module, device: str, on_batch: BatchHook | None = None,
                    precision: Precision | None = None, max_loss: float | None = None,
                    max_loss_batches: int = 10, ckpt: Checkpoints | None = None,
                    partial: Callable[[int, dict], dict] | None = None) -> dict:
    """One pass over `loader`. Loss and correct counts stay on the device and are read every
    `sync_every` batches, where divergence is also checked (the first bad batch is remembered on
    the device, so the report names it exactly). Diverged: a non-finite loss at once; a loss
    above `max_loss` for `max_loss_batches` batches in a row, or on the epoch's mean.
    With `ckpt`, a deferred signal writes `partial(batches done, sums)` after the batch and
    stops; a resumed epoch skips the `ckpt.skip` batches its checkpoint had trained."""
    precision = precision or Precision("fp32", device)
    every, n = sync_every(device), len(loader)
    zero = torch.zeros((), device=device)
    loss_sum, correct, total = zero.double(), zero.long(), 0
    first_bad, bad_loss, streak = zero.long() - 1, zero.clone(), zero.long()
    skip = ckpt.skip if ckpt is not None else 0
    if skip:  # resuming mid-epoch: the sums of the batches already trained
        s = ckpt.sums
        loss_sum, correct, total = loss_sum + s["loss_sum"], correct + s["correct"], s["total"]
        first_bad, bad_loss = zero.long() + s["first_bad"], zero + s["bad_loss"]
        streak = zero.long() + s["streak"]

    def sums() -> dict:
        return {"loss_sum": float(loss_sum), "correct": int(correct), "total": total,
                "first_bad": int(first_bad), "bad_loss": float(bad_loss), "streak": int(streak)}

    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i < skip:
            continue  # the same order (its generators were restored), trained before the stop
        if skip and i == skip:
            _resumed(ckpt)
        if len(y) < 2:
            continue  # a last batch of one image: batch-norm cannot train on it (and 1 of N)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = net(x)
            loss = loss_fn(logits, y)
        precision.step(loss, optimizer)
        value = loss.detach().float()
        finite = torch.isfinite(value)
        if max_loss is None:
            bad = ~finite
        else:  # a spike that recovers is not divergence: count batches above the bound in a row
            streak = torch.where(finite & (value > max_loss), streak + 1, 0)
            bad = ~finite | (streak >= max_loss_batches)
        newly = bad & (first_bad < 0)
        first_bad = torch.where(newly, i + 1, first_bad)
        bad_loss = torch.where(newly, value, bad_loss)
        loss_sum += value.double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        total += len(y)
        if (i + 1) % every == 0:
            _check(first_bad, bad_loss, n, max_loss, max_loss_batches)  # one read: the device catches up here
            if on_batch:
                on_batch(i + 1, n)
        if ckpt is not None and ckpt.stop_signal is not None:
            checkpoints.stop_if_signalled(ckpt, lambda done=i + 1: partial(done, sums()))
    if skip and ckpt.skip:  # every batch had been trained before the stop
        _resumed(ckpt)
    _check(first_bad, bad_loss, n, max_loss, max_loss_batches)
    if on_batch and n % every:
        on_batch(n, n)
    seconds = time.perf_counter() - start
    if total == 0:
        raise ValueError("the training split has no batch of two or more images: use more "
                         "training images or a larger batch_size")
    mean_loss = float(loss_sum) / total
    if max_loss is not None and mean_loss > max_loss:
        raise Diverged(mean_loss, None, n, bound=max_loss, window=max_loss_batches)
    return {"loss": mean_loss, "acc": int(correct) / total, "seconds": seconds,
            "images_per_s": total / seconds}


def _resumed(ckpt: Checkpoints) -> None:
    """At the batch a mid-epoch checkpoint stopped at: the random state as it was then."""
    checkpoints.set_global_rng(ckpt.rng_after_skip)
    ckpt.skip, ckpt.sums, ckpt.rng_after_skip = 0, None, None


def evaluate(net: nn.Module, loader, loss_fn: nn.Module, device: str,
             on_batch: BatchHook | None = None, precision: Precision | None = None) -> dict:
    """Loss and accuracy, plus the class probabilities and targets for metrics.

    The forward pass runs in the training precision; logits are upcast to float64 before the
    softmax, so the probabilities sum to 1 to machine precision whatever the autocast dtype.
    """
    precision = precision or Precision("fp32", device)
    net.eval()
    probs, targets, loss_sum = [], [], torch.zeros((), device=device, dtype=torch.float64)
    start = time.perf_counter()
    with torch.inference_mode():
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with precision.autocast():
                logits = net(x)
            logits = logits.double()
            loss_sum += loss_fn(logits, y) * len(y)
            probs.append(torch.softmax(logits, 1))  # stays on the device: one copy at the end
            targets.append(y)
            if on_batch:
                on_batch(i + 1, len(loader))
    p = torch.cat(probs).cpu().numpy()
    t = torch.cat(targets).cpu().numpy()
    seconds = time.perf_counter() - start
    return {"loss": float(loss_sum) / len(t), "acc": float((p.argmax(1) == t).mean()),
            "seconds": seconds, "images_per_s": len(t) / seconds, "probs": p, "targets": t}


@torch.no_grad()
def compute_features(extractor: nn.Module, loader: DataLoader, device: str,
                     precision: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of a frozen extractor over a loader, on the CPU, in loader order."""
    extractor.eval()
    precision = precision or Precision("fp32", device)
    feats, ys = [], []
    for x, y in loader:
        with precision.autocast():
            out = extractor(x.to(device, non_blocking=True))
        feats.append(out.float().cpu())  # the head trains in fp32 (under its own autocast)
        ys.append(y.cpu())
    return torch.cat(feats), torch.cat(ys)


def feature_loader(feats: torch.Tensor, ys: torch.Tensor, batch_size: int, shuffle: bool,
                   seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(feats, ys), batch_size=batch_size, shuffle=shuffle,
                      generator=gen)


def extract_features(backbone: nn.Module, loader: DataLoader, device: str, batch_size: int,
                     shuffle: bool, seed: int, precision: Precision | None = None) -> DataLoader:
    """Run a frozen backbone once over a split; the head then trains on the stored features."""
    return feature_loader(*compute_features(backbone, loader, device, precision), batch_size,
                          shuffle, seed)


def make_optimizer(param_groups: list[dict], cfg: TrainingConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    else:
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        opt = cls(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])  # the schedule's base, as schedulers keep it
    return opt


def add_new_params(optimizer: torch.optim.Optimizer, scheduler, groups: list[dict]) -> None:
    """Gradual unfreezing: newly trainable parameters join the running optimizer where the
    schedule is now (the same fraction of their base rate as the others), instead of restarting
    the optimizer state and the learning-rate schedule."""
    first = optimizer.param_groups[0]
    progress = first["lr"] / first["initial_lr"]
    present = {id(p) for g in optimizer.param_groups for p in g["params"]}
    by_name = {g.get("name"): g for g in optimizer.param_groups}
    for group in groups:
        new = [p for p in group["params"] if id(p) not in present]
        if not new:
            continue
        if group.get("name") in by_name:
            by_name[group["name"]]["params"].extend(new)
            continue
        base = group.get("lr", first["initial_lr"])
        optimizer.add_param_group({**group, "params": new, "initial_lr": base,
                                   "lr": base * progress})
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs.append(base)
        if hasattr(scheduler, "min_lrs"):  # ReduceLROnPlateau keeps one floor per group
            scheduler.min_lrs.append(scheduler.min_lrs[-1])


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainingConfig):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.gamma)
    return None


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    last_state: dict | None = None  # the last epoch's weights, when fit was asked to keep them
    optimizer_state_mb: float = 0.0  # what the optimizer held at the end (Adam: 2 per parameter)


def fit(net: nn.Module, set_train: Callable[[], None], param_groups: Callable[[], list[dict]],
        on_epoch_start: Callable[[int], bool], train_loader: DataLoader, val_loader: DataLoader,
        cfg: TrainingConfig, device: str, on_epoch: Callable[[dict], None] | None = None,
        on_batch: BatchHook | None = None, precision: Precision | None = None,
        ckpt: Checkpoints | None = None, keep_last: bool = False) -> FitResult:
    """Train `net` for cfg.epochs with early stopping on validation loss.

    `set_train` puts the net in training mode (frozen batch-norm stays in eval), `param_groups`
    gives the trainable groups (named "backbone" / "head"; lr_backbone is 0 while the backbone
    is frozen), `on_epoch_start(epoch)` (0-based) returns True when the trainable set
    changed (gradual unfreezing) so the optimizer is rebuilt. The best-validation weights are
    restored before returning. A diverging loss (see `Diverged`) stops training at once and
    propagates, naming the epoch, batch and learning rate. With `ckpt` (see checkpoints.py)
    it resumes from `ckpt.saved` and writes a checkpoint every `ckpt.every` epochs.
    """
    precision = precision or Precision.of(cfg.precision, device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(param_groups(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    result, best_loss, best_state, waited = FitResult(), float("inf"), None, 0
    first = 1
    saved = ckpt.saved if ckpt is not None else None
    if saved is not None:
        for done in range(saved["epoch"] + bool(saved["batch"])):  # the same trainable set
            if on_epoch_start(done):
                add_new_params(optimizer, scheduler, param_groups())
        try:
            checkpoints.restore(saved, net, optimizer, scheduler, precision)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
            # the weights were checked at `open`; this is the optimizer's or scheduler's state
            ckpt.set_aside(f"cannot be restored ({checkpoints._why(err)})")
            raise checkpoints.CheckpointUnusable(
                f"checkpoint {ckpt.file} cannot be restored ({checkpoints._why(err)}); it was "
                "moved aside: run the suite again to train this cell from epoch 0") from None
        result = FitResult(list(saved["history"]), saved["best_epoch"])
        best_loss, best_state, waited = saved["best_loss"], saved["best_state"], saved["waited"]
        first = saved["epoch"] + 1
        if saved["batch"]:
            ckpt.skip, ckpt.sums, ckpt.rng_after_skip = saved["batch"], saved["sums"], saved["rng"]
        checkpoints.set_rng(saved["rng_epoch_start" if saved["batch"] else "rng"], train_loader)

    def state(epoch: int, batch: int = 0, **more) -> dict:
        loop = {"history": result.history, "best_epoch": result.best_epoch, "best_loss": best_loss,
                "best_state": best_state, "waited": waited, "batch": batch,
                "rng": checkpoints.rng_state(train_loader), **more}
        return checkpoints.snapshot(net, optimizer, scheduler, precision, loop, epoch)

    with checkpoints.deferred_signals(ckpt):
        for epoch in range(first, cfg.epochs + 1):
            if on_epoch_start(epoch - 1):  # strategies count epochs from 0
                add_new_params(optimizer, scheduler, param_groups())
            set_train()
            lrs = {g.get("name", "head"): g["lr"] for g in optimizer.param_groups}
            # the random state the epoch starts from: a mid-epoch checkpoint replays its order
            start = checkpoints.rng_state(train_loader) if ckpt is not None else None

            def partial(batch: int, sums: dict, epoch=epoch, start=start) -> dict:
                return state(epoch - 1, batch, sums=sums, rng_epoch_start=start)
            try:
                tr = train_one_epoch(net, train_loader, optimizer, loss_fn, device, on_batch,
                                     precision, cfg.max_loss, cfg.max_loss_batches, ckpt, partial)
            except Diverged as err:
                raise err.at(epoch, lrs.get("head", 0.0)) from None
            va = evaluate(net, val_loader, loss_fn, device, precision=precision)
            if not np.isfinite(va["loss"]):
                raise Diverged(va["loss"], epoch=epoch, lr=lrs.get("head", 0.0))
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"],
                   "val_loss": va["loss"], "val_acc": va["acc"], "lr": lrs.get("head", 0.0),
                   "lr_backbone": lrs.get("backbone", 0.0), "train_seconds": tr["seconds"],
                   "eval_seconds": va["seconds"], "images_per_s": tr["images_per_s"]}
            result.history.append(row)
            if on_epoch:
                on_epoch(row)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(va["loss"])
            elif scheduler is not None:
                scheduler.step()
            if va["loss"] < best_loss:
                best_loss, result.best_epoch, waited = va["loss"], epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                waited += 1
                if cfg.patience is not None and waited >= cfg.patience:
                    result.stopped_early = True
                    break
            if ckpt is not None:
                if ckpt.due(epoch):
                    ckpt.write(state(epoch))
                checkpoints.stop_if_signalled(ckpt, lambda epoch=epoch: state(epoch))
    result.optimizer_state_mb = sum(t.numel() * t.element_size() for s in optimizer.state.values()
                                    for t in s.values() if torch.is_tensor(t)) / 2**20
    if keep_last:
        result.last_state = copy.deepcopy(checkpoints.plain(net).state_dict())
    if best_state is not None:
        net.load_state_dict(best_state)
    return result
