"""Transfer strategies and evaluation protocols as one table: a `StrategySpec` per name says
what is loaded, what trains and how, and everything else reads the row (the config schema's
choices and defaults, the CLI's choices, the model builder, the cell runner, the tuner).
Adding a strategy is one `register(StrategySpec(...))` here (plus its head or fit if new);
docs/development.md walks through it. No other module compares a strategy's name.

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

How to transfer, at what cost (parameter-efficient and two-stage fine-tuning, models/adapters.py
and run/two_stage.py):
bitfit  pretrained, the backbone's biases and the head trained
norm    pretrained, the normalisation layers' affine parameters and the head trained
lora    pretrained, low-rank adapters (Hugging Face peft; `rank`, `alpha`, `lora_dropout`,
        `targets`) and the head trained; the adapters are merged into the weights after training
lp_ft   pretrained, the head first fitted as a linear probe on the frozen backbone's cached
        features for `probe_epochs` epochs, then everything fine-tuned from that head at
        `ft_lr_scale` times the learning rates (Kumar et al., ICLR 2022)

Frozen parts run in eval mode even while the model trains: batch-norm running statistics never
move and dropout inside them is off, so a frozen backbone is a fixed function and its features
can be computed once (the feature-reuse path) with exactly the result of recomputing them.
Every strategy that trains a pretrained backbone also takes `batchnorm: pretrained`: its batch-norm
layers then run in eval mode too (ImageNet's running statistics kept, their affine parameters
still trained where the strategy trains them), instead of re-estimating the statistics from a
few training batches.

This module imports no torch at import time: the config schema reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from mribench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

# Which head a strategy puts on the backbone.
MODEL_HEAD = "model"  # the model entry's own head (models[].head)
LINEAR_HEAD = "linear"  # one Linear layer on the pooled features, whatever the model declares
NEIGHBOUR_HEAD = "knn"  # the kNN vote on pooled features (models/neighbours.py)

# How a strategy fits (the cell runner and the tuner dispatch on these, never on names).
LOOP = "loop"  # the training loop (train/engine.fit), per-epoch metrics and checkpoints
NEIGHBOURS = "neighbours"  # a neighbour index on the training features: no epochs, no gradient
PROBE_THEN_LOOP = "probe_then_loop"  # the head on frozen features first, then the loop on all


def _all(cfg, n_groups: int, epoch: int) -> int:
    return n_groups


def _none(cfg, n_groups: int, epoch: int) -> int:
    return 0


def _last_blocks(cfg, n_groups: int, epoch: int) -> int:
    return min(cfg.blocks, n_groups)


def _one_more_every(cfg, n_groups: int, epoch: int) -> int:
    return min(max(epoch, 0) // cfg.every, n_groups)


@dataclass(frozen=True)
class StrategySpec:
    name: str
    summary: str  # one phrase for the schema's description and `mribench models describe`
    pretrained: bool = True  # loads the model's pretrained weights
    head: str = MODEL_HEAD
    fit: str = LOOP
    # how many block groups, counted from the output side, train at epoch `epoch` (0-based);
    # the others are frozen and run in eval mode (BN statistics and dropout fixed)
    trainable: Callable[[Any, int, int], int] = _all
    # the trainable set changes during training (the engine rebuilds its optimizer)
    steps: bool = False
    # no backbone parameter ever trains, so the backbone's features may be computed once
    backbone_frozen: bool = False
    protocol: bool = False  # an evaluation protocol (the head is the protocol's, not the model's)
    # StrategyConfig keys only this strategy takes, with their defaults (others refuse them)
    options: dict[str, Any] = field(default_factory=dict)
    # called once on the built model after freezing: narrows which backbone parameters train
    # (bitfit, norm) or adds the ones that do (lora's adapters)
    restrict: Callable[[Any], None] | None = None
    # called once after training, before testing: the network as tested and logged (lora
    # merges its adapters); gets the built model and the fit result
    deploy: Callable[[Any, Any], None] | None = None

    @property
    def trains(self) -> bool:
        return self.fit != NEIGHBOURS

    @property
    def has_gradient(self) -> bool:
        """Gradient explanations (the Grad-CAM family) need a differentiable classifier."""
        return self.fit != NEIGHBOURS


_REGISTRY: Registry[StrategySpec] = Registry("strategy", listed="registered strategies")


def register(spec: StrategySpec) -> StrategySpec:
    return _REGISTRY.register(spec)


def unregister(name: str) -> None:
    """Drop a registered strategy (tests register their own and remove them afterwards)."""
    _REGISTRY.pop(name)


def get(name: str) -> StrategySpec:
    return _REGISTRY.find(name)


def names() -> list[str]:
    """Registered names in registration order (the order of the schema's and CLI's choices)."""
    return list(_REGISTRY)


def option_keys() -> set[str]:
    """Every strategy-specific StrategyConfig key (each belongs to the strategies listing it)."""
    return {key for spec in _REGISTRY.values() for key in spec.options}


def description() -> str:
    """The schema's description of `strategies[].name`, from the table."""
    trained = "; ".join(f"{s.name}: {s.summary}" for s in _REGISTRY.values() if not s.protocol)
    protocols = [f"{s.name} ({s.summary})" for s in _REGISTRY.values() if s.protocol]
    listed = (", ".join(protocols[:-1]) + " and " + protocols[-1] if len(protocols) > 1
              else "".join(protocols))
    return (f"{trained}. Evaluation protocols on the frozen pretrained backbone's pooled "
            f"features: {listed}.")


# Every strategy that trains a pretrained backbone takes `batchnorm`: unset (or `adapt`) lets
# its batch-norm running statistics follow the new images, as the papers do; `pretrained` keeps
# ImageNet's (the layers run in eval mode; their affine parameters still train where the
# strategy trains them). Unset stays out of the dump, so earlier run_keys do not change.
BN = {"batchnorm": None}

SCRATCH = register(StrategySpec("scratch", "random init", pretrained=False))
FROZEN = register(StrategySpec(
    "frozen", "pretrained backbone frozen, batch-norm statistics included", trainable=_none,
    backbone_frozen=True))
FULL = register(StrategySpec("full", "everything fine-tuned", options=BN))
PARTIAL = register(StrategySpec(
    "partial", "the last `blocks` block groups trained", trainable=_last_blocks, options=BN))
GRADUAL = register(StrategySpec(
    "gradual", "one more block group unfrozen every `every` epochs", trainable=_one_more_every,
    steps=True, options=BN))
LINEAR_PROBE = register(StrategySpec(
    "linear_probe", "one Linear layer, whatever the model's head", head=LINEAR_HEAD,
    trainable=_none, backbone_frozen=True, protocol=True))
KNN = register(StrategySpec(
    "knn", "cosine k-nearest neighbours, no training", head=NEIGHBOUR_HEAD, fit=NEIGHBOURS,
    trainable=_none, backbone_frozen=True, protocol=True, options={"k": 20}))


def _bitfit(built) -> None:
    from mribench.models import adapters

    adapters.bitfit(built)


def _norm(built) -> None:
    from mribench.models import adapters

    adapters.norm(built)


def _lora(built) -> None:
    from mribench.models import adapters

    adapters.lora(built)


def _merge_lora(built, result) -> None:
    from mribench.models import adapters

    adapters.merge_lora(built, result)


BITFIT = register(StrategySpec(
    "bitfit", "the backbone's biases and the head trained", restrict=_bitfit, options=BN))
NORM = register(StrategySpec(
    "norm", "the normalisation layers' affine parameters and the head trained", restrict=_norm,
    options=BN))
LORA = register(StrategySpec(
    "lora", "low-rank adapters (peft: `rank`, `alpha`, `lora_dropout`, `targets`) and the head "
    "trained, merged into the weights after training", restrict=_lora, deploy=_merge_lora,
    options={"rank": 8, "alpha": 16, "lora_dropout": 0.0, "targets": None, **BN}))
LP_FT = register(StrategySpec(
    "lp_ft", "the head fitted as a linear probe on the frozen features for `probe_epochs` "
    "epochs, then everything fine-tuned from it at `ft_lr_scale` times the learning rates",
    fit=PROBE_THEN_LOOP, options={"probe_epochs": 10, "ft_lr_scale": 0.1, **BN}))


# ------------------------------------------------------------- reading a StrategyConfig's row
def spec_of(strategy) -> StrategySpec:
    """The row of a StrategyConfig (or of a bare name)."""
    return get(strategy if isinstance(strategy, str) else strategy.name)


def uses_pretrained(strategy) -> bool:
    return spec_of(strategy).pretrained


def trainable_groups(strategy, n_groups: int, epoch: int = 0) -> int:
    """How many block groups, counted from the output side, train at `epoch` (0-based)."""
    return spec_of(strategy).trainable(strategy, n_groups, epoch)


def deploy(built, result=None) -> None:
    """The trained network as it is tested and logged (lora: adapters merged)."""
    row = spec_of(built.strategy)
    if row.deploy is not None:
        row.deploy(built, result)


def as_deployed(strategy):
    """The StrategyConfig whose build has the architecture a logged model's weights fit: a
    strategy with a deploy step (lora, merged) was logged as the plain network `full` builds,
    so predicting needs no peft."""
    return strategy if spec_of(strategy).deploy is None else type(strategy)(name=FULL.name)


def pretrained_bn_statistics(strategy) -> bool:
    """True when the backbone's batch-norm layers keep their pretrained running statistics
    while the rest trains (`batchnorm: pretrained`)."""
    return getattr(strategy, "batchnorm", None) == "pretrained"


def backbone_always_frozen(strategy) -> bool:
    """True when no backbone parameter ever trains during the run (feature reuse is possible)."""
    return spec_of(strategy).backbone_frozen


def set_trainable(groups: list[list[nn.Module]], n_trainable: int) -> None:
    """Freeze every group, then unfreeze the last `n_trainable` ones."""
    for index, group in enumerate(groups):
        flag = index >= len(groups) - n_trainable
        for module in group:
            module.requires_grad_(flag)


def frozen_modules(groups: list[list[nn.Module]], n_trainable: int) -> list[nn.Module]:
    """The modules that stay in eval mode while the model trains (BN stats, dropout)."""
    return [module for group in groups[: len(groups) - n_trainable] for module in group]
