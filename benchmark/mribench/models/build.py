"""Assemble backbone + head + strategy into a `BuiltModel`: the one object the engine trains."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mribench.config.schema import HeadConfig, ModelConfig, StrategyConfig
from mribench.errors import UserError
from mribench.models import registry, strategies, weights
from mribench.models.archs import (
    check_patch_multiple,
    create_network,
    group_member,
    make_trunk,
    size_handling,
    timm_kwargs,
)
from mribench.models.heads import make_head
from mribench.models.neighbours import KnnHead
from mribench.models.spec import ModelSpec
from mribench.models.summary import layer_counts, param_counts


class Classifier(nn.Module):
    """model(x) == head(backbone(x)). `train()` keeps the frozen parts in eval mode, so any
    caller of `model.train()` (not only BuiltModel.train) leaves their BN statistics alone."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.frozen_parts: list[nn.Module] = []  # plain list: already registered via backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        for module in self.frozen_parts:
            module.eval()
        return self


@dataclass
class BuiltModel:
    model: nn.Module
    backbone: nn.Module
    head: nn.Module
    spec: ModelSpec
    strategy: StrategyConfig
    frozen_backbone: bool  # no backbone parameter ever trains: features may be computed once
    info: dict[str, str | int | float]
    groups: list[list[nn.Module]] = field(repr=False)  # backbone block groups, input to output
    group_names: list[tuple[str, ...]] = field(repr=False)
    n_trainable_groups: int = 0
    adapter: object = field(default=None, repr=False)  # lora: peft's LoraModel until merged

    def gradcam_layer(self) -> nn.Module:
        return self.backbone.net.get_submodule(self.spec.gradcam)

    def explain_layer(self, spec: str) -> tuple[str, nn.Module]:
        """The module an explanation layer spec names: "default", "stride:N" or a module path
        (see mribench.models.layers)."""
        from mribench.models.layers import resolve_layer

        return resolve_layer(self, spec)

    def param_groups(self, lr: float, backbone_lr: float | None = None,
                     layer_decay: float | None = None) -> list[dict]:
        """Optimizer parameter groups holding only trainable parameters. With layer_decay, one
        group per block group: the top one at the backbone's rate, each lower one at
        layer_decay times the rate above it (the block groups cover the whole backbone)."""
        out = []
        rate = lr if backbone_lr is None else backbone_lr
        if layer_decay is None:
            backbone = [p for p in self.backbone.parameters() if p.requires_grad]
            if backbone:
                out.append({"name": "backbone", "params": backbone, "lr": rate})
        else:
            for depth, group in enumerate(reversed(self.groups)):
                params = [p for m in group for p in m.parameters() if p.requires_grad]
                if params:
                    out.append({"name": f"backbone.{len(self.groups) - 1 - depth}",
                                "params": params, "lr": rate * layer_decay ** depth})
            # lora's adapters replace a group member that is itself adapted (a CNN's conv_head):
            # the group holds the wrapped layer, so its adapters go at the top group's rate
            grouped = {id(p) for g in out for p in g["params"]}
            loose = [p for p in self.backbone.parameters() if p.requires_grad
                     and id(p) not in grouped]
            if loose:
                out.append({"name": f"backbone.{len(self.groups) - 1}.adapters", "params": loose,
                            "lr": rate})
        head = [p for p in self.head.parameters() if p.requires_grad]
        out.append({"name": "head", "params": head, "lr": lr})
        return out

    def train(self, mode: bool = True) -> "BuiltModel":
        """Train mode, except frozen parts (BN statistics and dropout stay in eval)."""
        self.model.train(mode)
        return self

    def eval(self) -> "BuiltModel":
        return self.train(False)

    def on_epoch_start(self, epoch: int) -> bool:
        """Call before each epoch (0-based). True when the trainable set changed (gradual), so
        the caller rebuilds its optimizer from `param_groups`."""
        wanted = strategies.trainable_groups(self.strategy, len(self.groups), epoch)
        if not strategies.spec_of(self.strategy).steps or wanted == self.n_trainable_groups:
            return False
        self._set_trainable(wanted)
        return True

    def trainable_group_names(self) -> list[tuple[str, ...]]:
        return self.group_names[len(self.group_names) - self.n_trainable_groups:]

    def _set_trainable(self, n_groups: int) -> None:
        strategies.set_trainable(self.groups, n_groups)
        self.n_trainable_groups = n_groups
        self.model.frozen_parts = ([self.backbone] if self.frozen_backbone
                                   else strategies.frozen_modules(self.groups, n_groups))
        if strategies.pretrained_bn_statistics(self.strategy) and not self.frozen_backbone:
            self.model.frozen_parts += [m for m in self.backbone.modules()
                                        if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.train(self.model.training)


def build(model: ModelConfig, strategy: StrategyConfig, num_classes: int, in_chans: int = 3,
          image_size: int | None = None, load_weights: bool = True) -> BuiltModel:
    """Build `model` for `strategy`. Pretrained weights iff strategy is not scratch.

    image_size: the side of the images the model will see (default: the registry's input size);
    the flatten_mlp head is sized from it. load_weights=False keeps the architecture and freezing
    but skips weight loading (for describing a combination without its weight file)."""
    spec = registry.get(model.name)
    row = strategies.spec_of(strategy)
    size = image_size or spec.input_size
    if size < spec.min_size:
        raise UserError(f"model {spec.name!r} needs images of at least {spec.min_size} px, "
                         f"got image_size {size}")
    check_patch_multiple(spec, size)
    net = create_network(spec, pretrained=row.pretrained, image_size=size)
    info: dict[str, str | int | float] = {"weight_source": "scratch", "weight_file": "none",
                                          "weight_sha256": "none",
                                          "input_size_handling": size_handling(spec, size)}
    if row.pretrained:
        if load_weights:
            found = weights.resolve(spec, model.weights)
            resampled = weights.load_into(net, spec, found.path, timm_kwargs(spec, size))
            info.update(weight_source=found.source, weight_file=str(found.path),
                        weight_sha256=found.sha256)
            if resampled:
                info["input_size_handling"] += f"; pretrained {resampled}"
        else:
            info["weight_source"] = "not loaded"
    # a protocol brings its own head: one Linear on pooled features, or the kNN vote
    head_cfg = model.head if row.head == strategies.MODEL_HEAD else HeadConfig()
    pooled = spec.pooled_features or (head_cfg.type == "linear" and spec.pre_logits is not None)
    backbone = make_trunk(net, spec, pooled, in_chans, keep_dropout=head_cfg.keep_dropout)
    group_names = list(spec.groups) + ([(spec.pre_logits,)] if pooled and spec.pre_logits else [])
    groups = [[group_member(backbone.net, n) for n in names] for names in group_names]
    _check_groups_cover(backbone, groups, spec.name)

    backbone.eval()
    example = torch.zeros(2, in_chans, size, size)
    with torch.no_grad():
        feature_shape = tuple(backbone(example).shape[1:])
    if row.head == strategies.NEIGHBOUR_HEAD:  # pooled features (the pooling moves into the feature store)
        pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if len(feature_shape) == 3 else []
        head = nn.Sequential(*pool, KnnHead(num_classes, strategy.k))
    else:
        head = make_head(head_cfg, feature_shape, num_classes, spec=spec)
    built = BuiltModel(Classifier(backbone, head), backbone, head, spec, strategy,
                       row.backbone_frozen, info, groups, group_names)
    built._set_trainable(row.trainable(strategy, len(groups), 0))
    if row.restrict is not None:  # bitfit, norm, lora: only some backbone parameters train
        row.restrict(built)
    info.update(param_counts(built.model))
    # an unfitted knn head has no training features to vote: count the layers in front of it
    neighbours = row.head == strategies.NEIGHBOUR_HEAD
    counted = nn.Sequential(backbone, *head[:-1]) if neighbours else built.model
    info.update(layer_counts(counted, example))
    # prefixed so they never collide with the caller's own run parameters
    info.update(model_source=spec.source, model_arch=spec.arch,
                model_head=row.head if neighbours else head_cfg.type,
                model_block_groups=len(groups), model_trainable_groups=built.n_trainable_groups,
                model_image_size=size, model_in_chans=in_chans,
                model_feature_shape="x".join(map(str, feature_shape)),
                params_backbone=sum(p.numel() for p in backbone.parameters()),
                params_head=sum(p.numel() for p in head.parameters()))
    built.train(True)
    return built


def _check_groups_cover(backbone: nn.Module, groups: list[list[nn.Module]], name: str) -> None:
    """Every backbone parameter belongs to exactly one group, else freezing would miss some."""
    owner: dict[int, int] = {}
    for index, group in enumerate(groups):
        for module in group:
            for p in module.parameters():
                if id(p) in owner:
                    raise ValueError(f"model {name!r}: a parameter is in block groups "
                                     f"{owner[id(p)]} and {index}")
                owner[id(p)] = index
    loose = [n for n, p in backbone.named_parameters() if id(p) not in owner]
    if loose:
        raise ValueError(f"model {name!r}: parameters outside every block group: {loose[:5]}")
