"""`mribench perf`: where training time goes, as ratios measured in one run on one machine.

- synthetic: the model's own training throughput on random tensors (the ceiling);
- pipeline: a real epoch through our loader (cached decoded images, per-epoch augmentation);
- loader: the loader alone, to show whether data or compute is the bottleneck;
- frozen with feature reuse: one backbone pass per split, then head-only epochs, against a
  frozen epoch that recomputes the backbone and against a full fine-tuning epoch.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from mribench import data
from mribench.config import (AugmentConfig, DatasetConfig, ModelConfig, PreprocessConfig,
                              SplitConfig, StrategyConfig)
from mribench.console import console, emit_table
from mribench.engine import extract_features, resolve_device, train_one_epoch
from mribench.models.build import build


def _timed_epoch(net: nn.Module, loader, params, device: str) -> dict:
    opt = torch.optim.Adam(params, lr=1e-4)
    out = train_one_epoch(net, loader, opt, nn.CrossEntropyLoss(), device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out


def _synthetic(net: nn.Module, params, n_images: int, batch: int, size: int, k: int,
               device: str) -> dict:
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, k, (batch,), device=device)
    loader = [(x, y)] * max(1, n_images // batch)
    return _timed_epoch(net, loader, params, device)


def measure(model: str, dataset: str, image_size: int, batch_size: int, per_class: int,
            data_dir: str | None, device: str = "cpu") -> list[dict]:
    torch.manual_seed(0)
    pre = PreprocessConfig(image_size=image_size)
    ds = DatasetConfig(name=dataset, subset_per_class=per_class)
    prepared = data.prepare(ds, SplitConfig(protocol="official", val_fraction=0.2), pre, seed=0,
                            fold=None, data_dir=data_dir)
    train, k = prepared.splits["train"], len(prepared.classes)
    aug = AugmentConfig(rotation=10, hflip=True)

    def loader(augment):
        return data.make_loader(train, pre, augment, mean=(0.5,) * 3, std=(0.25,) * 3,
                                batch_size=batch_size, shuffle=True, seed=0)

    rows = []

    def add(name: str, r: dict, **ratios) -> None:
        rows.append({"measurement": name, "seconds": round(r["seconds"], 3),
                     "images_per_s": round(r["images_per_s"], 1), **ratios})
        console.print(f"{name}: {r['images_per_s']:.1f} img/s")

    start = time.perf_counter()
    n = sum(len(x) for x, _ in loader(aug))
    t = time.perf_counter() - start
    add("loader only (cached, augmented)", {"seconds": t, "images_per_s": n / t})

    full = build(ModelConfig(name=model), StrategyConfig(name="full"), k, image_size=image_size)
    full.model.to(device)
    full.train()
    params = [p for g in full.param_groups(1e-4) for p in g["params"]]
    _synthetic(full.model, params, batch_size, batch_size, image_size, k, device)  # warm-up
    syn = _synthetic(full.model, params, n, batch_size, image_size, k, device)
    add("full: synthetic input", syn)
    real = _timed_epoch(full.model, loader(aug), params, device)
    add("full: pipeline epoch", real,
        vs_synthetic=round(real["images_per_s"] / syn["images_per_s"], 3))

    frozen = build(ModelConfig(name=model), StrategyConfig(name="frozen"), k,
                   image_size=image_size)
    frozen.model.to(device)
    frozen.train()
    head_params = [p for g in frozen.param_groups(1e-4) for p in g["params"]]
    recompute = _timed_epoch(frozen.model, loader(None), head_params, device)
    add("frozen: epoch recomputing backbone", recompute,
        vs_full_epoch=round(recompute["seconds"] / real["seconds"], 3))
    t0 = time.perf_counter()
    feats = extract_features(frozen.backbone, loader(None), device, batch_size, True, 0)
    extract = time.perf_counter() - t0
    add("frozen: one-time feature extraction", {"seconds": extract, "images_per_s": n / extract})
    frozen.head.train()
    reuse = _timed_epoch(frozen.head, feats, head_params, device)
    add("frozen: epoch on reused features", reuse,
        vs_full_epoch=round(reuse["seconds"] / real["seconds"], 4))
    return rows


def run(args) -> int:
    device = resolve_device(args.device)
    rows = measure(args.model, args.dataset, args.image_size, args.batch_size, args.per_class,
                   args.data_dir, device)
    where = device if device != "cpu" else f"cpu, {torch.get_num_threads()} threads"
    emit_table(rows, f"perf: {args.model} at {args.image_size}px, batch {args.batch_size}, "
               f"{where}", args.json,
               columns=["measurement", "seconds", "images_per_s", "vs_synthetic",
                        "vs_full_epoch"],
               extra={"model": args.model, "dataset": args.dataset, "device": device,
                      "image_size": args.image_size, "batch_size": args.batch_size})
    return 0


