"""make_loader / load_image: shapes, normalisation, decoded-image cache, seeded augmentation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from mribench import files
from mribench.config.schema import AugmentConfig, PreprocessConfig
from mribench.data import Sample, images, load_image, make_loader, store, transforms

PRE = PreprocessConfig(image_size=16)
IMAGENET = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture
def samples(tmp_path, monkeypatch) -> list[Sample]:
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    images.set_cache_dir(None)
    rng = np.random.default_rng(0)
    out = []
    for i in range(6):
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 32, 3), dtype=np.uint8)).save(path)
        out.append(Sample(path, i % 2))
    return out


@pytest.fixture
def decodes(monkeypatch) -> list[Path]:
    """Records every real image decode."""
    seen: list[Path] = []
    original = images.decode
    for module in (images, store):  # validation and the store's rebuild both decode
        monkeypatch.setattr(module, "decode", lambda path: seen.append(path) or original(path))
    return seen


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_are_normalised_tensors(samples):
    loader = make_loader(samples, PRE, None, **IMAGENET, batch_size=4, shuffle=False, seed=0)
    (x, y), (x2, _) = batches(loader)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [0, 1, 0, 1] and x2.shape[0] == 2
    raw = torch.tensor(load_image(samples[0].path, PRE)).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(IMAGENET["mean"]).view(3, 1, 1), torch.tensor(IMAGENET["std"]).view(3, 1, 1)
    assert torch.allclose(x[0], (raw - mean) / std, atol=1e-6)


def test_one_channel_uses_mean_statistics(samples):
    pre = PreprocessConfig(image_size=16, channels=1)
    x, _ = next(iter(make_loader(samples, pre, None, **IMAGENET, batch_size=2, shuffle=False, seed=0)))
    raw = torch.tensor(load_image(samples[0].path, pre)).permute(2, 0, 1).float() / 255
    assert x.shape == (2, 1, 16, 16)
    assert torch.allclose(x[0], (raw - np.mean(IMAGENET["mean"])) / np.mean(IMAGENET["std"]), atol=1e-5)


def test_epochs_after_the_first_do_not_decode(samples, decodes):
    loader = make_loader(samples, PRE, AugmentConfig(hflip=True), **IMAGENET, batch_size=3,
                         shuffle=True, seed=0)
    batches(loader)
    assert len(decodes) == len(samples)
    batches(loader)
    batches(loader)
    assert len(decodes) == len(samples)


def test_disk_cache_serves_a_new_process(samples, decodes, monkeypatch):
    first = load_image(samples[0].path, PRE).copy()
    monkeypatch.setattr(images, "_stores", {})  # what a fresh process starts with
    monkeypatch.setattr(files, "_SHA256", {})
    assert np.array_equal(load_image(samples[0].path, PRE), first)
    assert len(decodes) == 1
    assert list((images.cache_dir() / "pixels").rglob("*.npy"))


def test_augmentation_is_seeded_and_changes_each_epoch(samples):
    aug = AugmentConfig(rotation=30, hflip=True, vflip=True, brightness=0.3)
    def run():
        return make_loader(samples, PRE, aug, **IMAGENET, batch_size=6, shuffle=True, seed=7)
    loader = run()
    epoch1, epoch2 = batches(loader)[0], batches(loader)[0]
    again = batches(run())[0]
    assert torch.equal(epoch1[0], again[0]) and torch.equal(epoch1[1], again[1])
    assert not torch.equal(epoch1[0], epoch2[0])


def test_no_augmentation_is_deterministic(samples):
    plain = [batches(make_loader(samples, PRE, a, **IMAGENET, batch_size=6, shuffle=False, seed=s))[0][0]
             for a, s in ((None, 0), (AugmentConfig(), 1))]
    assert torch.equal(plain[0], plain[1])


def test_workers_give_the_same_batches(samples):
    aug = AugmentConfig(rotation=10, hflip=True)
    kw = dict(batch_size=3, shuffle=True, seed=3)
    serial = batches(make_loader(samples, PRE, aug, **IMAGENET, **kw))
    parallel = batches(make_loader(samples, PRE, aug, **IMAGENET, **kw, num_workers=2))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel))


def test_batched_rotation_matches_torchvision_image_by_image():
    x = torch.rand(5, 3, 20, 26, generator=torch.Generator().manual_seed(0))
    angles = torch.tensor([-30.0, -7.5, 0.0, 12.25, 44.0])
    batched = transforms.rotate(x, angles)
    for i, angle in enumerate(angles.tolist()):
        one = F.rotate(x[i], angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
        assert torch.allclose(batched[i], one, atol=1e-6)


def test_batch_augmentation_is_per_image():
    x = torch.rand(2, 3, 8, 8).expand(2, 3, 8, 8).clone()
    x[1] = x[0]
    u = torch.tensor([[0.5, 0.2, 0.9, 0.5], [0.5, 0.8, 0.9, 0.5]])  # flip the first image only
    out = transforms.augment(x, u, AugmentConfig(hflip=True))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_the_cpu_ones(samples):
    aug = AugmentConfig(rotation=20, hflip=True, brightness=0.2)
    kw = dict(batch_size=3, shuffle=True, seed=1)
    cpu = batches(make_loader(samples, PRE, aug, **IMAGENET, **kw))
    gpu = make_loader(samples, PRE, aug, **IMAGENET, **kw, device="cuda", channels_last=True)
    for (x, y), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(x, xg.cpu(), atol=1e-4) and torch.equal(y, yg.cpu())
