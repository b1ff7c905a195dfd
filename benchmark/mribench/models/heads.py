"""Classification heads declared in a suite (HeadConfig), sized from the backbone's output.

linear       replace the final layer: [GAP ->] [Dropout ->] Linear(k)                  (Study B)
             keep_dropout: the dropout torchvision's own classifier has before its last FC
             (`spec.classifier_dropout`), as when only that FC is replaced
gap_mlp      GAP -> Linear(hidden) -> ReLU [-> Dropout] -> Linear(k)                    (Study A)
flatten_mlp  Flatten -> Linear(hidden) -> ReLU -> Dropout -> BatchNorm1d -> Linear(k)   (Study C)
conv_gap_mlp Conv3x3(conv_channels) -> ReLU [-> Dropout] -> GAP -> Linear(hidden) -> ReLU
             [-> Dropout] -> Linear(k)
layers       any sequence of the layers below, then Linear(k), e.g. Study C's fine-tuned VGG16
             (GAP -> BatchNorm -> Dropout 0.23 -> Dense 510 ReLU -> BatchNorm -> Dropout 0.3):
               layers: [gap, batchnorm, {dropout: 0.23}, {dense: 510}, relu, batchnorm,
                        {dropout: 0.3}]

Layer specs of a `layers` head (a name, or a one-key mapping with its value):
  gap                global average pooling of a feature map, flattened to a vector
  flatten            a feature map flattened to a vector (sized for the built image size)
  batchnorm          BatchNorm2d on a feature map, BatchNorm1d on a vector
  relu               ReLU
  {dropout: p}       Dropout(p), 0 <= p < 1
  {dense: n}         Linear(n) on a vector (no activation: follow it with relu)
  {conv: n}          Conv2d(n, 3x3, 'same' padding) on a feature map; {conv: n, kernel: k} for
                     another odd kernel
The final Linear(k) to the classes is always added: the class count comes from the data.

Heads that start with global average pooling (linear, gap_mlp, a `layers` head starting with
gap, on a feature map) can be cut after it (`split_pooling`): a frozen backbone's features are
then cached pooled, [N, C] instead of [N, C, H, W] (49 times smaller at 7x7), and the rest of
the head trains on them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mribench.config.head_layers import HEAD_TYPES, parse_layers
from mribench.config.schema import HeadConfig
from mribench.errors import UserError


class CheckedFlatten(nn.Flatten):
    """Flatten that says what went wrong when the image size differs from the one built for."""

    def __init__(self, expected: tuple[int, ...]):
        super().__init__()
        self.expected = tuple(expected)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.expected:
            raise ValueError(f"flatten head was built for backbone features {self.expected} but "
                             f"got {tuple(x.shape[1:])}: build the model with the image size it is fed")
        return super().forward(x)


def _layers_head(raw: Any, feature_shape: tuple[int, ...], num_classes: int) -> list[nn.Module]:
    """The modules of a `layers` head, sized layer by layer from the backbone's output."""
    shape = tuple(feature_shape)
    modules: list[nn.Module] = []
    for i, (kind, opt) in enumerate(parse_layers(raw)):
        is_map = len(shape) == 3
        where = f"head layers[{i}] ({kind})"
        if kind in ("gap", "flatten", "conv") and not is_map:
            raise UserError(f"{where} needs a feature map, but the input there is a vector "
                             f"{shape}")
        if kind == "dense" and is_map:
            raise UserError(f"{where} needs a vector, but the input there is a feature map "
                             f"{shape}: put gap or flatten before it")
        if kind == "gap":
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            shape = (shape[0],)
        elif kind == "flatten":
            modules.append(CheckedFlatten(shape))
            shape = (math.prod(shape),)
        elif kind == "batchnorm":
            modules.append(nn.BatchNorm2d(shape[0]) if is_map else nn.BatchNorm1d(shape[0]))
        elif kind == "relu":
            modules.append(nn.ReLU(inplace=True))
        elif kind == "dropout":
            modules.append(nn.Dropout(opt["p"]))
        elif kind == "dense":
            modules.append(nn.Linear(shape[0], opt["units"]))
            shape = (opt["units"],)
        else:  # conv
            modules.append(nn.Conv2d(shape[0], opt["units"], opt["kernel"],
                                     padding=opt["kernel"] // 2))
            shape = (opt["units"], *shape[1:])
    if len(shape) != 1:
        raise UserError(f"head layers end on a feature map {shape}: add gap or flatten so the "
                         "final Linear to the classes gets a vector")
    return [*modules, nn.Linear(shape[0], num_classes)]


def _kept_dropout(cfg: HeadConfig, spec) -> float:
    """The dropout rate a linear head applies before its Linear: its own `dropout`, or with
    keep_dropout the one torchvision's classifier has before the FC it replaces."""
    if not getattr(cfg, "keep_dropout", False):
        return cfg.dropout
    if cfg.type != "linear":
        raise UserError(f"keep_dropout keeps the library's classifier around a replaced last FC: "
                         f"it needs head type linear, not {cfg.type!r}")
    if cfg.dropout:
        raise UserError("give either dropout or keep_dropout for a linear head, not both")
    if spec is None:
        raise ValueError("keep_dropout: make_head needs the model's registry spec (spec=...) to "
                         "know the library's classifier dropout")
    return spec.classifier_dropout[-1] if spec.classifier_dropout else 0.0


def make_head(cfg: HeadConfig, feature_shape: tuple[int, ...], num_classes: int,
              spec=None) -> nn.Sequential:
    """`feature_shape` is the backbone output without the batch dimension: (C, H, W) or (F,).
    `spec` (the model's registry entry) is needed only by a linear head with keep_dropout."""
    is_map = len(feature_shape) == 3
    channels = feature_shape[0]
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if is_map else []
    drop = [nn.Dropout(cfg.dropout)] if cfg.dropout else []
    rate = _kept_dropout(cfg, spec)  # also refuses keep_dropout on any head but linear
    if cfg.type == "linear":
        layers = [*pool, *([nn.Dropout(rate)] if rate else []), nn.Linear(channels, num_classes)]
    elif cfg.type == "layers":
        if cfg.dropout:
            raise UserError("a layers head takes its dropout as {dropout: p} items in layers")
        layers = _layers_head(getattr(cfg, "layers", None), feature_shape, num_classes)
    elif cfg.type == "gap_mlp":
        layers = [*pool, nn.Linear(channels, cfg.hidden), nn.ReLU(inplace=True), *drop,
                  nn.Linear(cfg.hidden, num_classes)]
    elif cfg.type == "conv_gap_mlp":
        if not is_map:
            raise UserError(f"conv_gap_mlp head needs a feature map, got features {feature_shape}")
        conv_drop = [nn.Dropout(cfg.conv_dropout)] if cfg.conv_dropout else []
        layers = [nn.Conv2d(channels, cfg.conv_channels, 3, padding=1), nn.ReLU(inplace=True),
                  *conv_drop, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                  nn.Linear(cfg.conv_channels, cfg.hidden), nn.ReLU(inplace=True), *drop,
                  nn.Linear(cfg.hidden, num_classes)]
    elif cfg.type == "flatten_mlp":
        layers = [CheckedFlatten(feature_shape), nn.Linear(math.prod(feature_shape), cfg.hidden),
                  nn.ReLU(inplace=True), *drop, nn.BatchNorm1d(cfg.hidden),
                  nn.Linear(cfg.hidden, num_classes)]
    else:  # the schema forbids this; keep the error explicit for programmatic callers
        raise ValueError(f"unknown head type {cfg.type!r}; use {', '.join(HEAD_TYPES)}")
    return nn.Sequential(*layers)


def split_pooling(head: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """(pooling, rest): the head's leading global pooling and flatten (parameter-free, the same
    function in train and eval mode), and the layers after it, which share the head's
    parameters. pooling is empty when the head does not start by pooling."""
    n = 0
    if len(head) >= 2 and isinstance(head[0], nn.AdaptiveAvgPool2d) and \
            head[0].output_size in (1, (1, 1)) and isinstance(head[1], nn.Flatten):
        n = 2
    return head[:n], head[n:]
