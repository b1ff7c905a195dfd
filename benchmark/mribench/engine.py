"""Training and evaluation as plain functions that return dicts; the caller logs.

The same code runs on CPU and CUDA. `fit` keeps the best-validation checkpoint and restores it at
the end, so every test metric is computed on the restored checkpoint, once.
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

from mribench.config import TrainingConfig

BatchHook = Callable[[int, int], None]  # (batches done, batches total)


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    return name


def train_one_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    loss_fn: nn.Module, device: str, on_batch: BatchHook | None = None) -> dict:
    total, correct, loss_sum = 0, 0, 0.0
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if len(y) < 2:
            continue  # a last batch of one image: batch-norm cannot train on it (and 1 of N)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = net(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
        if on_batch:
            on_batch(i + 1, len(loader))
    seconds = time.perf_counter() - start
    if total == 0:
        raise ValueError("the training split has no batch of two or more images: use more "
                         "training images or a larger batch_size")
    return {"loss": loss_sum / total, "acc": correct / total, "seconds": seconds,
            "images_per_s": total / seconds}


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, loss_fn: nn.Module, device: str,
             on_batch: BatchHook | None = None) -> dict:
    """Loss and accuracy, plus the class probabilities and targets for metrics."""
    net.eval()
    probs, targets, loss_sum = [], [], 0.0
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = net(x)
        loss_sum += loss_fn(logits, y).item() * len(y)
        probs.append(torch.softmax(logits.double(), 1).cpu())  # float64: sums to 1 for sklearn
        targets.append(y.cpu())
        if on_batch:
            on_batch(i + 1, len(loader))
    seconds = time.perf_counter() - start
    p = torch.cat(probs).numpy()
    t = torch.cat(targets).numpy()
    return {"loss": loss_sum / len(t), "acc": float((p.argmax(1) == t).mean()),
            "seconds": seconds, "images_per_s": len(t) / seconds, "probs": p, "targets": t}


@torch.no_grad()
def compute_features(extractor: nn.Module, loader: DataLoader,
                     device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of a frozen extractor over a loader, on the CPU, in loader order."""
    extractor.eval()
    feats, ys = [], []
    for x, y in loader:
        feats.append(extractor(x.to(device, non_blocking=True)).cpu())
        ys.append(y)
    return torch.cat(feats), torch.cat(ys)


def feature_loader(feats: torch.Tensor, ys: torch.Tensor, batch_size: int, shuffle: bool,
                   seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(feats, ys), batch_size=batch_size, shuffle=shuffle,
                      generator=gen)


def extract_features(backbone: nn.Module, loader: DataLoader, device: str, batch_size: int,
                     shuffle: bool, seed: int) -> DataLoader:
    """Run a frozen backbone once over a split; the head then trains on the stored features."""
    return feature_loader(*compute_features(backbone, loader, device), batch_size, shuffle, seed)


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


def fit(net: nn.Module, set_train: Callable[[], None], param_groups: Callable[[], list[dict]],
        on_epoch_start: Callable[[int], bool], train_loader: DataLoader, val_loader: DataLoader,
        cfg: TrainingConfig, device: str, on_epoch: Callable[[dict], None] | None = None,
        on_batch: BatchHook | None = None) -> FitResult:
    """Train `net` for cfg.epochs with early stopping on validation loss.

    `set_train` puts the net in training mode (frozen batch-norm stays in eval), `param_groups`
    gives the trainable groups (named "backbone" / "head"; lr_backbone is 0 while the backbone
    is frozen), `on_epoch_start(epoch)` (0-based) returns True when the trainable set
    changed (gradual unfreezing) so the optimizer is rebuilt. The best-validation weights are
    restored before returning.
    """
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(param_groups(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    result, best_loss, best_state, waited = FitResult(), float("inf"), None, 0
    for epoch in range(1, cfg.epochs + 1):
        if on_epoch_start(epoch - 1):  # strategies count epochs from 0
            add_new_params(optimizer, scheduler, param_groups())
        set_train()
        lrs = {g.get("name", "head"): g["lr"] for g in optimizer.param_groups}
        tr = train_one_epoch(net, train_loader, optimizer, loss_fn, device, on_batch)
        va = evaluate(net, val_loader, loss_fn, device)
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
        if np.isfinite(va["loss"]) and va["loss"] < best_loss:
            best_loss, result.best_epoch, waited = va["loss"], epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
            if cfg.patience is not None and waited >= cfg.patience:
                result.stopped_early = True
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    return result
