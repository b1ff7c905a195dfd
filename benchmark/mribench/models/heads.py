"""Classification heads declared in a suite (HeadConfig), sized from the backbone's output.

linear       replace the final layer: [GAP ->] [Dropout ->] Linear(k)                  (Study B)
gap_mlp      GAP -> Linear(hidden) -> ReLU [-> Dropout] -> Linear(k)                    (Study A)
flatten_mlp  Flatten -> Linear(hidden) -> ReLU -> Dropout -> BatchNorm1d -> Linear(k)   (Study C)
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
    elif cfg.type == "flatten_mlp":
        layers = [CheckedFlatten(feature_shape), nn.Linear(math.prod(feature_shape), cfg.hidden),
                  nn.ReLU(inplace=True), *drop, nn.BatchNorm1d(cfg.hidden),
                  nn.Linear(cfg.hidden, num_classes)]
    else:  # the schema forbids this; keep the error explicit for programmatic callers
        raise ValueError(f"unknown head type {cfg.type!r}; use linear, gap_mlp or flatten_mlp")
    return nn.Sequential(*layers)
