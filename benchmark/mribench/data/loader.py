"""DataLoader over cached pixels: normalisation, and seeded per-epoch augmentation.

The sampler draws, each epoch, an order and one random seed per sample from its own generator;
the dataset derives all augmentation parameters from that seed. So a given (seed, epoch) gives the
same batches whatever num_workers is, and every epoch sees fresh augmentations.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from mribench.config import AugmentConfig, PreprocessConfig
from mribench.data.images import load_image
from mribench.data.samples import Sample


def _stats(values: float | Sequence[float], channels: int) -> torch.Tensor:
    v = np.atleast_1d(np.asarray(values, dtype=np.float32))
    if channels == 1:
        v = v.mean(keepdims=True)  # one grey channel: the mean of the per-channel statistics
    elif v.size == 1:
        v = np.repeat(v, channels)
    return torch.from_numpy(v).view(-1, 1, 1)


def augment(x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, flips and brightness on a [C, H, W] tensor in [0, 1]."""
    u = torch.rand(4, generator=gen).tolist()
    if aug.rotation:
        angle = (2 * u[0] - 1) * aug.rotation
        x = F.rotate(x, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    if aug.hflip and u[1] < 0.5:
        x = x.flip(-1)
    if aug.vflip and u[2] < 0.5:
        x = x.flip(-2)
    if aug.brightness:
        x = (x * (1 + (2 * u[3] - 1) * aug.brightness)).clamp(0, 1)
    return x


class CachedImages(Dataset):
    def __init__(self, samples: list[Sample], pre: PreprocessConfig, aug: AugmentConfig | None,
                 mean, std):
        self.samples, self.pre = samples, pre
        self.aug = aug if aug is not None and aug.active else None
        self.mean, self.std = _stats(mean, pre.channels), _stats(std, pre.channels)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, aug_seed = item
        sample = self.samples[index]
        pixels = load_image(sample.path, self.pre)
        x = torch.tensor(pixels).permute(2, 0, 1).float().div(255)  # copy: cached pixels are read-only
        if self.aug is not None:
            x = augment(x, self.aug, torch.Generator().manual_seed(aug_seed))
        return (x - self.mean) / self.std, sample.label


class SeededSampler(Sampler):
    """Yields (index, augmentation seed); the generator advances, so each epoch differs."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle = n, shuffle
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.gen) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=self.gen)
        return iter(zip(order.tolist(), seeds.tolist()))


def make_loader(samples: list[Sample], pre: PreprocessConfig, aug: AugmentConfig | None, *, mean, std,
                batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(CachedImages(samples, pre, aug, mean, std), batch_size=batch_size,
                      sampler=SeededSampler(len(samples), shuffle, seed), num_workers=num_workers,
                      persistent_workers=num_workers > 0)  # not respawned every epoch
