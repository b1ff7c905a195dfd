"""Classification heads declared in a suite (HeadConfig), sized from the backbone's output.

linear       replace the final layer: [GAP ->] [Dropout ->] Linear(k)                  (Study B)
gap_mlp      GAP -> Linear(hidden) -> ReLU [-> Dropout] -> Linear(k)                    (Study A)
flatten_mlp  Flatten -> Linear(hidden) -> ReLU -> Dropout -> BatchNorm1d -> Linear(k)   (Study C)
conv_gap_mlp Conv3x3(conv_channels) -> ReLU [-> Dropout] -> GAP -> Linear(hidden) -> ReLU
             [-> Dropout] -> Linear(k)                         (Study C's fine-tuned VGG16)

Heads that start with global average pooling (linear and gap_mlp on a feature map) can be cut
after it (`split_pooling`): a frozen backbone's features are then cached pooled, [N, C] instead
of [N, C, H, W] (49 times smaller at 7x7), and the rest of the head trains on them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mribench.config import HeadConfig


class CheckedFlatten(nn.Flatten):
    """Flatten that says what went wrong when the image size differs from the one built for."""

    def __init__(self, expected: tuple[int, ...]):
        super().__init__()
        self.expected = tuple(expected)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.expected:
            raise ValueError(f"flatten_mlp head was built for backbone features {self.expected} but "
                             f"got {tuple(x.shape[1:])}: build the model with the image size it is fed")
        return super().forward(x)


def make_head(cfg: HeadConfig, feature_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """`feature_shape` is the backbone output without the batch dimension: (C, H, W) or (F,)."""
    is_map = len(feature_shape) == 3
    channels = feature_shape[0]
    pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if is_map else []
    drop = [nn.Dropout(cfg.dropout)] if cfg.dropout else []
    if cfg.type == "linear":
        layers = [*pool, *drop, nn.Linear(channels, num_classes)]
    elif cfg.type == "gap_mlp":
        layers = [*pool, nn.Linear(channels, cfg.hidden), nn.ReLU(inplace=True), *drop,
                  nn.Linear(cfg.hidden, num_classes)]
    elif cfg.type == "conv_gap_mlp":
        if not is_map:
            raise ValueError(f"conv_gap_mlp head needs a feature map, got features {feature_shape}")
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
        raise ValueError(f"unknown head type {cfg.type!r}; use linear, gap_mlp, flatten_mlp or "
                         "conv_gap_mlp")
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
