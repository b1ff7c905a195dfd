"""How fast this machine trains and evaluates one model at one image size: a few timed batches
of synthetic images through the real network (the same `build`, precision and training step as
a cell), cached per machine, model, size and device so a second dry run measures nothing.

Two rates per (model, size): seconds per image of a training step with every parameter
trainable (scratch / full), and of an evaluation forward pass (validation, test, feature
extraction, kNN). Each is kept as fastest / median / slowest over the timed batches, so the
estimate's range carries the machine's own jitter (a shared machine's load included).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from mribench.config.schema import ModelConfig, StrategyConfig
from mribench.console import console
from mribench.data.locate import cache_root
from mribench.models.build import build
from mribench.train import precision as fastpath
from mribench.train.engine import train_one_epoch
from mribench.train.precision import Precision

TIMED = 3  # timed batches per rate at most, after one untimed warm-up batch
BUDGET_S = 4.0  # ... fewer (two at least) once a rate has taken this long: a dry run stays short
VERSION = 2  # part of the cache key: a change to how rates are measured re-measures


def machine() -> str:
    """The machine as the cache keys it: host, CPU, threads, torch, and the GPU when used."""
    return (f"{platform.node()}|{platform.machine()}|{os.cpu_count()} cpus|"
            f"{torch.get_num_threads()} threads|torch {torch.__version__}")


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores, {platform.node()})"


def batch_for(batch_size: int, device: str) -> int:
    """CPU time per image hardly depends on the batch: measure small ones (a dry run should
    take seconds); a GPU's does, so measure the cell's own batch size there."""
    return batch_size if device.startswith("cuda") else min(batch_size, 2)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _cache_file(cache_dir: str | None) -> Path:
    return cache_root(cache_dir) / "calibration" / "rates.json"


def load() -> float | None:
    """The 1-minute load average: a calibration on a busy machine measures the busy machine."""
    try:
        return round(os.getloadavg()[0], 1)
    except (AttributeError, OSError):  # not on every platform
        return None


def rates(model: ModelConfig, size: int, channels: int, batch: int, classes: int, device: str,
          precision: str, cache_dir: str | None = None, fresh: bool = False) -> dict:
    """{"train": [fast, median, slow], "forward": [...]} seconds per image, measured once per
    machine and key (cached in the cache folder's calibration/rates.json)."""
    key = "|".join(map(str, (VERSION, machine(), device, model.name, model.head.type, size,
                             channels, batch, precision)))
    path = _cache_file(cache_dir)
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if key in cached and not fresh:
        return cached[key]
    console.print(f"calibrating {model.name} at {size} px on {device} (batch {batch}) ...",
                  highlight=False, markup=False)
    measured = {**measure(model, size, channels, batch, classes, device, precision),
                "load": load(), "when": time.strftime("%Y-%m-%d %H:%M")}
    cached[key] = measured
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cached, indent=1))
    tmp.replace(path)  # atomic: two dry runs at once never leave half a file
    return measured


def measure(model: ModelConfig, size: int, channels: int, batch: int, classes: int, device: str,
            precision: str) -> dict:
    torch.manual_seed(0)
    built = build(model, StrategyConfig(name="scratch"), classes, in_chans=channels,
                  image_size=size, load_weights=False)  # same compute as pretrained weights
    fastpath.place(built.model, device)
    prec = Precision.of(precision, device)
    x = torch.randn(batch, channels, size, size, device=device)
    if fastpath.channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    params = [p for g in built.param_groups(1e-4) for p in g["params"]]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    loss = nn.CrossEntropyLoss()

    def train_step() -> None:
        built.train()
        train_one_epoch(built.model, [(x, y)], optimizer, loss, device, precision=prec)

    def forward() -> None:
        built.model.eval()
        with torch.no_grad(), prec.autocast():
            built.model(x)
    out = {}
    for name, step in (("train", train_step), ("forward", forward)):
        step()  # warm-up: allocator, cuDNN autotuning, lazy inits
        _sync(device)
        times: list[float] = []
        begun = time.perf_counter()
        while len(times) < TIMED and (len(times) < 2 or time.perf_counter() - begun < BUDGET_S):
            start = time.perf_counter()
            step()
            _sync(device)
            times.append((time.perf_counter() - start) / batch)
        out[name] = [min(times), statistics.median(times), max(times)]
    return out
