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
from torch.utils.data import DataLoader, TensorDataset

from mribench.data.samples import Sample
from mribench.models.heads import split_pooling
from mribench.train.precision import Precision


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
