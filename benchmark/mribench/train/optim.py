"""The optimizer and learning-rate schedule `training:` asks for, and gradual unfreezing's
new parameters joining them mid-run."""
from __future__ import annotations

import torch

from mribench.config.schema import TrainingConfig


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
