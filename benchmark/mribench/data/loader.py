"""DataLoader over the decoded-image store, with seeded per-epoch augmentation on the device.

The sampler draws, each epoch, an order and one random seed per sample from its own generator;
each image's augmentation parameters come from its seed. So a given (seed, epoch) gives the same
batches whatever num_workers is, and every epoch sees fresh augmentations. Workers only copy
uint8 rows out of the store; the batch is moved (pinned, non-blocking on CUDA) to the device,
where `transforms.ToInput` augments and normalises it in one batched pass.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mribench.config.schema import AugmentConfig, PreprocessConfig
from mribench.data.images import pixels_for
from mribench.data.samples import Sample
from mribench.data.transforms import ToInput, draw


def _stats(values: float | Sequence[float], channels: int) -> torch.Tensor:
    v = np.atleast_1d(np.asarray(values, dtype=np.float32))
    if channels == 1:
        v = v.mean(keepdims=True)  # one grey channel: the mean of the per-channel statistics
    elif v.size == 1:
        v = np.repeat(v, channels)
    return torch.from_numpy(v)


class CachedImages(Dataset):
    """(uint8 [H, W, C] pixels, label, the image's four augmentation uniforms) per item."""

    def __init__(self, samples: list[Sample], pre: PreprocessConfig, augmented: bool):
        self.samples, self.augmented = samples, augmented
        self.rows = pixels_for([s.path for s in samples], pre)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, torch.Tensor]:
        index, aug_seed = item
        store, sha = self.rows[index]
        u = draw(aug_seed) if self.augmented else torch.zeros(4)
        return torch.from_numpy(store.read(sha)), self.samples[index].label, u


class DeviceLoader:
    """Iterates (input, labels) already on `device`: the DataLoader's uint8 batch is copied over
    and turned into the model's input there."""

    def __init__(self, loader: DataLoader, to_input: ToInput, device: str):
        self.loader, self.to_input, self.device = loader, to_input, torch.device(device)
        self.dataset, self.batch_size = loader.dataset, loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for pixels, labels, u in self.loader:
            # pinned on CUDA: the copies overlap compute; nothing here waits for the device
            pixels = pixels.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            u = u.to(self.device, non_blocking=True)
            yield self.to_input(pixels, u), labels


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


def make_loader(samples: list[Sample], pre: PreprocessConfig, aug: AugmentConfig | None, *, mean,
                std, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                device: str = "cpu", channels_last: bool = False) -> DeviceLoader:
    augmented = aug is not None and aug.active
    cuda = str(device).startswith("cuda")
    loader = DataLoader(CachedImages(samples, pre, augmented), batch_size=batch_size,
                        sampler=SeededSampler(len(samples), shuffle, seed), num_workers=num_workers,
                        persistent_workers=num_workers > 0,  # not respawned every epoch
                        pin_memory=cuda)
    to_input = ToInput(aug, _stats(mean, pre.channels), _stats(std, pre.channels), channels_last)
    return DeviceLoader(loader, to_input, device)
