"""Frozen-backbone feature reuse: each image's features computed once, for every split.

A frozen backbone (eval mode, no augmentation) maps an image to the same features every epoch,
so the head can train on stored features. When the head starts with global average pooling
(linear, gap_mlp), the pooling runs before the features are stored: EfficientNet-Lite0 at 224 px
keeps 1280 numbers per image instead of 1280 x 7 x 7 (49 times less memory), and the rest of
the head trains on them with exactly the same result. The same store then serves the test set,
its clean subset and the external sets, so no image goes through the backbone twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from mribench.data.samples import Sample
from mribench.models.heads import split_pooling
from mribench.train.engine import compute_features, feature_loader


def feature_stage(backbone: nn.Module, head: nn.Sequential,
                  pooled: bool = True) -> tuple[nn.Module, nn.Sequential]:
    """(extractor, trainable head): with `pooled`, the head's leading pooling moves into the
    extractor, so the stored features are pooled."""
    if not pooled:
        return backbone, head
    pool, rest = split_pooling(head)
    return (nn.Sequential(backbone, pool) if len(pool) else backbone), rest


class FeatureStore:
    """Features of a fixed extractor, memoised per image file; `loader` serves any samples."""

    def __init__(self, extractor: nn.Module, image_loader: Callable[[list[Sample]], DataLoader],
                 device: str, batch_size: int, seed: int):
        self.extractor, self.image_loader = extractor, image_loader
        self.device, self.batch_size, self.seed = device, batch_size, seed
        self._rows: dict[Path, torch.Tensor] = {}
        self.images_extracted = 0

    def loader(self, samples: list[Sample], shuffle: bool) -> DataLoader:
        missing = list(dict.fromkeys(s.path for s in samples if s.path not in self._rows))
        if missing:
            fresh = [Sample(path, 0) for path in missing]  # labels play no part in features
            feats, _ = compute_features(self.extractor, self.image_loader(fresh), self.device)
            # clone: a row view would keep its whole batch tensor alive
            self._rows.update((p, f.clone()) for p, f in zip(missing, feats))
            self.images_extracted += len(missing)
        x = torch.stack([self._rows[s.path] for s in samples])
        y = torch.tensor([s.label for s in samples], dtype=torch.long)
        return feature_loader(x, y, self.batch_size, shuffle, self.seed)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self._rows.values())).shape) if self._rows else ()
