"""Transfer-learning strategies: which backbone block groups train, and when.

scratch  random init, everything trained
frozen   pretrained backbone frozen (batch-norm statistics included), only the head trained
full     pretrained, everything trained
partial  pretrained, the last `blocks` block groups and the head trained
gradual  pretrained, starts like `frozen`; one more block group (from the output side) is
         unfrozen every `every` epochs

Evaluation protocols (MedMNIST+'s end-to-end / linear probing / kNN), on the frozen backbone:
linear_probe  like `frozen`, but the head is always one Linear layer on the pooled features
              (whatever head the model declares), trained on the reused features
knn           no training: cosine k-nearest neighbours (strategy `k`) of the pooled features of
              the training images vote (models/neighbours.py)

Frozen parts run in eval mode even while the model trains: batch-norm running statistics never
move and dropout inside them is off, so a frozen backbone is a fixed function and its features
can be computed once (the feature-reuse path) with exactly the result of recomputing them.
"""
from __future__ import annotations

from torch import nn

from mribench.config.schema import StrategyConfig

PRETRAINED = ("frozen", "full", "partial", "gradual", "linear_probe", "knn")
PROTOCOLS = ("linear_probe", "knn")  # evaluation protocols: the head is theirs, not the model's
FROZEN = ("frozen", "linear_probe", "knn")  # no backbone parameter ever trains


def uses_pretrained(strategy: StrategyConfig) -> bool:
    return strategy.name != "scratch"


def trainable_groups(strategy: StrategyConfig, n_groups: int, epoch: int = 0) -> int:
    """How many block groups, counted from the output side, train at `epoch` (0-based)."""
    if strategy.name in ("scratch", "full"):
        return n_groups
    if strategy.name in FROZEN:
        return 0
    if strategy.name == "partial":
        return min(strategy.blocks, n_groups)
    if strategy.name == "gradual":
        return min(max(epoch, 0) // strategy.every, n_groups)
    raise ValueError(f"unknown strategy {strategy.name!r}; use scratch, {', '.join(PRETRAINED)}")


def backbone_always_frozen(strategy: StrategyConfig) -> bool:
    """True when no backbone parameter ever trains during the run (feature reuse is possible)."""
    return strategy.name in FROZEN


def set_trainable(groups: list[list[nn.Module]], n_trainable: int) -> None:
    """Freeze every group, then unfreeze the last `n_trainable` ones."""
    for index, group in enumerate(groups):
        flag = index >= len(groups) - n_trainable
        for module in group:
            module.requires_grad_(flag)


def frozen_modules(groups: list[list[nn.Module]], n_trainable: int) -> list[nn.Module]:
    """The modules that stay in eval mode while the model trains (BN stats, dropout)."""
    return [module for group in groups[: len(groups) - n_trainable] for module in group]
