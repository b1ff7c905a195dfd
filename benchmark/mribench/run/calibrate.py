"""How fast this machine trains and evaluates one model at one image size: a few timed batches
of synthetic images through the real network (the same `build`, strategy, precision and training
step as a cell), cached per machine, model, size, strategy, batch and device so a second dry run
measures nothing.

Rates per (model, size, strategy), seconds per image at the cell's batch size (capped on CPU):
- forward: an evaluation pass in eval mode under no_grad (validation, test, external sets,
  feature extraction, kNN);
- train: a training step of the cell's strategy (full / scratch: every parameter; partial N:
  backward through the last N block groups only; frozen with augmentation: the head), skipped
  for feature reuse, whose epochs run on stored features;
- head: a training step of a linear head on stored feature vectors (feature reuse's epochs).
One warm-up batch is discarded, then several batches are timed; each rate is kept as fastest /
median / slowest, so the estimate's range carries the machine's own jitter (load included).
Batches of 2 (the first calibration) overstated CPU cost ~5x: per-batch overhead and no
vectorisation across images (docs/speed.md).
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
from mribench.models import strategies
from mribench.models.build import build
from mribench.train import precision as fastpath
from mribench.train.engine import train_one_epoch
from mribench.train.precision import Precision

TIMED = 8  # timed batches per rate at most, after one untimed warm-up batch
BUDGET_S = 30.0  # ... fewer (three at least) once this long has passed: ~1 min per model
HEAD_TIMED = 9  # head steps per round: microseconds each, so a descheduled one does not count
CPU_BATCH = 16  # the largest batch timed on CPU: per-image time has levelled off by then
HEAD_FEATURES = 1280  # head rate's input width when the model does not say (EfficientNet's)
VERSION = 3  # part of the cache key: a change to how rates are measured re-measures


def machine() -> str:
    """The machine as the cache keys it: host, CPU, threads, torch, and the GPU when used."""
    return (f"{platform.node()}|{platform.machine()}|{os.cpu_count()} cpus|"
            f"{torch.get_num_threads()} threads|torch {torch.__version__}")


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores, {platform.node()})"


def batch_for(batch_size: int, device: str) -> int:
    """The cell's own batch size (per-image time depends on it: tiny batches pay per-batch
    overhead and lose vectorisation), capped at CPU_BATCH on CPU so a dry run stays short."""
    return batch_size if device.startswith("cuda") else min(batch_size, CPU_BATCH)


NO_STEP, WHOLE = "none", "whole"  # rate keys: no training step; every block trained


def strategy_key(strategy: StrategyConfig | None) -> str:
    """What the train rate was measured with: none (feature reuse: no training step through the
    network), every block trained (`whole`), or the strategy as built (partial N, frozen head)."""
    if strategy is None:
        return NO_STEP
    spec = strategies.spec_of(strategy)
    # scratch and full train everything; gradual is interpolated from the whole network's step
    if spec.name in (strategies.SCRATCH.name, strategies.FULL.name) or spec.steps:
        return WHOLE
    return f"{spec.name}{strategy.blocks if spec.name == strategies.PARTIAL.name else ''}"


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
          precision: str, cache_dir: str | None = None, fresh: bool = False,
          strategy: StrategyConfig | None = None) -> dict:
    """{"forward": [fast, median, slow], "head": [...], "train": [...] (absent for strategy
    None)} seconds per image, measured once per machine and key (cached in the cache folder's
    calibration/rates.json)."""
    key = "|".join(map(str, (VERSION, machine(), device, model.name, model.head.type, size,
                             channels, batch, precision, strategy_key(strategy))))
    path = _cache_file(cache_dir)
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if key in cached and not fresh:
        return cached[key]
    console.print(f"calibrating {model.name} at {size} px on {device} (batch {batch}, "
                  f"training step: {strategy_key(strategy)}) ...", highlight=False, markup=False)
    measured = {**measure(model, size, channels, batch, classes, device, precision, strategy),
                "batch": batch,
                "load": load(), "when": time.strftime("%Y-%m-%d %H:%M")}
    cached[key] = measured
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cached, indent=1))
    tmp.replace(path)  # atomic: two dry runs at once never leave half a file
    return measured


def _timed(steps: dict, batch: int, device: str) -> dict:
    """{name: [fastest, median, slowest] seconds per image} of each step over a batch: one
    warm-up batch each (allocator, cuDNN autotuning, lazy inits) discarded, then the steps in
    interleaved rounds (A B A B ...: a busy spell on a shared machine hits each alike), TIMED
    rounds, three at least once BUDGET_S has passed. A step's time is the median over the
    round's repeats (head: HEAD_TIMED of them; microseconds, so a descheduled one is noise)."""
    for step, _ in steps.values():
        step()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    begun = time.perf_counter()
    rounds = 0
    while rounds < TIMED and (rounds < 3 or time.perf_counter() - begun < BUDGET_S):
        for name, (step, repeats) in steps.items():
            once = []
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                _sync(device)
                once.append((time.perf_counter() - start) / batch)
            times[name].append(statistics.median(once))
        rounds += 1
    return {name: [min(t), statistics.median(t), max(t)] for name, t in times.items()}


def measure(model: ModelConfig, size: int, channels: int, batch: int, classes: int, device: str,
            precision: str, strategy: StrategyConfig | None = None) -> dict:
    torch.manual_seed(0)
    built_as = StrategyConfig(name=strategies.SCRATCH.name) \
        if strategy_key(strategy) in (NO_STEP, WHOLE) \
        else strategy  # scratch: same compute as full fine-tuning, no weights needed
    built = build(model, built_as, classes, in_chans=channels, image_size=size,
                  load_weights=False)  # same compute as pretrained weights
    fastpath.place(built.model, device)
    prec = Precision.of(precision, device)
    x = torch.randn(batch, channels, size, size, device=device)
    if fastpath.channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    loss = nn.CrossEntropyLoss()

    def forward() -> None:
        built.eval()
        with torch.no_grad(), prec.autocast():
            built.model(x)
    steps = {"forward": (forward, 1)}
    if strategy is not None:
        params = [p for g in built.param_groups(1e-4) for p in g["params"]]
        optimizer = torch.optim.Adam(params, lr=1e-4)

        def train_step() -> None:
            built.train()
            train_one_epoch(built.model, [(x, y)], optimizer, loss, device, precision=prec)
        steps["train"] = (train_step, 1)
    # feature reuse's epochs: a linear head on stored pooled features (microseconds per image)
    head = nn.Linear(getattr(built.model, "num_features", HEAD_FEATURES), classes).to(device)
    feats = torch.randn(batch, head.in_features, device=device)
    head_opt = torch.optim.Adam(head.parameters(), lr=1e-3)

    def head_step() -> None:
        head_opt.zero_grad()
        loss(head(feats), y).backward()
        head_opt.step()
    steps["head"] = (head_step, HEAD_TIMED)
    return _timed(steps, batch, device)
