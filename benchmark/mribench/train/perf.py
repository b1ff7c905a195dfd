"""`mribench perf`: where training time goes, as ratios that survive a noisy machine.

Every measurement is taken once per round and the rounds are interleaved (A B C ... A B C ...),
so a slow spell on a shared machine hits all of them alike; each ratio is computed within a
round and reported as the median over rounds with its min-max spread.

- loader: the input pipeline alone (store -> device -> augment + normalise), no model;
- synthetic: the model's own training throughput on random tensors already on the device;
- pipeline: a real training epoch through our loader;
  both in fp32 (our plain path) and on the fast path (the precision `auto` picks, channels-last
  on CUDA; on CPU, where `auto` is fp32, the fast path shown is bf16 autocast instead);
- frozen: an epoch recomputing the frozen backbone, the one-time feature extraction, and a head
  epoch on the reused features, each against a full fine-tuning epoch.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from mribench import data
from mribench.config.schema import (
    AugmentConfig,
    DatasetConfig,
    ModelConfig,
    PreprocessConfig,
    SplitConfig,
    StrategyConfig,
)
from mribench.console import console, emit_table
from mribench.errors import UserError
from mribench.models import strategies
from mribench.models.build import build
from mribench.train import precision as fastpath
from mribench.train.epoch import train_one_epoch
from mribench.train.features import extract_features
from mribench.train.precision import Precision, resolve_device

# ratio name -> (numerator, denominator, what); throughput ratios unless named "cost"
RATIOS = {
    "fast path vs fp32 (pipeline)": ("pipeline fast", "pipeline fp32", "throughput"),
    "fast path vs fp32 (synthetic)": ("synthetic fast", "synthetic fp32", "throughput"),
    "pipeline vs synthetic (fast path)": ("pipeline fast", "synthetic fast", "throughput"),
    "pipeline vs synthetic (fp32)": ("pipeline fp32", "synthetic fp32", "throughput"),
    "loader vs training (fast path)": ("loader", "pipeline fast", "throughput"),
    "frozen recompute vs full epoch": ("frozen recompute", "pipeline fast", "cost"),
    "frozen reuse vs full epoch": ("frozen reuse", "pipeline fast", "cost"),
    "feature extraction vs full epoch": ("frozen extraction", "pipeline fast", "cost"),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class Bench:
    """The models, loaders and precisions of one perf invocation; `round()` times each once."""

    def __init__(self, model: str, dataset: str, image_size: int, batch_size: int,
                 per_class: int, data_dir: str | None, device: str, precision: str,
                 passes: int = 1):
        torch.manual_seed(0)
        self.device = device
        fastpath.configure(False, device)
        pre = PreprocessConfig(image_size=image_size)
        prepared = data.prepare(DatasetConfig(name=dataset, subset_per_class=per_class),
                                SplitConfig(protocol="official", val_fraction=0.2), pre, seed=0,
                                fold=None, data_dir=data_dir)
        self.train, k = prepared.splits["train"], len(prepared.classes)
        self.fast = resolve_fast(precision, device)
        self.precisions = {"fp32": Precision("fp32", device), "fast": Precision(self.fast, device)}
        cl = fastpath.channels_last(device)

        def loader(augment, channels_last):
            return Repeat(passes, data.make_loader(self.train, pre, augment, mean=(0.5,) * 3, std=(0.25,) * 3,
                                    batch_size=batch_size, shuffle=True, seed=0,
                                    num_workers=fastpath.workers("auto", device), device=device,
                                    channels_last=channels_last))
        aug = AugmentConfig(rotation=10, hflip=True)
        self.loaders = {"fp32": loader(aug, False), "fast": loader(aug, cl),
                        "frozen_backbone": loader(None, cl)}
        self.n = len(self.train) * passes
        self.full = {}
        for name in ("fp32", "fast"):
            built = build(ModelConfig(name=model), StrategyConfig(name=strategies.FULL.name), k,
                          image_size=image_size)
            built.model.to(device)
            if name == "fast":
                fastpath.place(built.model, device)
            built.train()
            self.full[name] = built
        self.frozen = build(ModelConfig(name=model), StrategyConfig(name=strategies.FROZEN.name), k,
                            image_size=image_size)
        fastpath.place(self.frozen.model, device)
        self.frozen.train()
        fmt = torch.channels_last if cl else torch.contiguous_format
        shape = (batch_size, 3, image_size, image_size)
        self.synthetic = {
            name: [(torch.randn(shape, device=device).contiguous(
                memory_format=fmt if name == "fast" else torch.contiguous_format),
                torch.randint(0, k, (batch_size,), device=device))] * max(1, self.n // batch_size)
            for name in ("fp32", "fast")}
        self.optimizers = {name: torch.optim.Adam(self._params(b), lr=1e-4)
                           for name, b in self.full.items()}
        self.head_opt = torch.optim.Adam(self._params(self.frozen), lr=1e-4)

    @staticmethod
    def _params(built) -> list:
        return [p for g in built.param_groups(1e-4) for p in g["params"]]

    def _epoch(self, net: nn.Module, loader, optimizer, precision: Precision) -> float:
        start = time.perf_counter()
        train_one_epoch(net, loader, optimizer, nn.CrossEntropyLoss(), self.device,
                        precision=precision)
        _sync(self.device)
        return time.perf_counter() - start

    def _loader_pass(self) -> tuple[float, int]:
        start, n = time.perf_counter(), 0
        for x, _ in self.loaders["fast"]:
            n += len(x)
        _sync(self.device)
        return time.perf_counter() - start, n

    def warm_up(self) -> None:
        """One batch through every path: allocator, cuDNN autotuning, lazy inits."""
        for name, built in self.full.items():
            self._epoch(built.model, self.synthetic[name][:1], self.optimizers[name],
                        self.precisions[name])
        next(iter(self.loaders["fast"]))

    def round(self) -> dict[str, tuple[float, int]]:
        """(seconds, images) of each measurement, in a fixed order."""
        out = {"loader": self._loader_pass()}
        for name in ("fp32", "fast"):
            built, opt, prec = self.full[name], self.optimizers[name], self.precisions[name]
            out[f"synthetic {name}"] = (self._epoch(built.model, self.synthetic[name], opt, prec),
                                        len(self.synthetic[name]) * self.synthetic[name][0][1].numel())
            out[f"pipeline {name}"] = (self._epoch(built.model, self.loaders[name], opt, prec),
                                       self.n)
        fast = self.precisions["fast"]
        self.frozen.train()
        out["frozen recompute"] = (self._epoch(self.frozen.model, self.loaders["frozen_backbone"],
                                               self.head_opt, fast), self.n)
        start = time.perf_counter()
        feats = extract_features(self.frozen.backbone, self.loaders["frozen_backbone"], self.device,
                                 self.loaders["frozen_backbone"].batch_size, True, 0, fast)
        out["frozen extraction"] = (time.perf_counter() - start, self.n)
        self.frozen.head.train()
        out["frozen reuse"] = (self._epoch(self.frozen.head, feats, self.head_opt, fast), self.n)
        return out


class Repeat:
    """A loader read `passes` times over as one measurement: a small image set (the device
    check's data pack) still gives a GPU enough batches of a large size to time."""

    def __init__(self, passes: int, loader):
        self.passes, self.loader, self.batch_size = passes, loader, loader.batch_size

    def __len__(self) -> int:
        return self.passes * len(self.loader)

    def __iter__(self):
        for _ in range(self.passes):
            yield from self.loader


def resolve_fast(precision: str, device: str) -> str:
    """The fast path's precision: what `precision` resolves to, or bf16 where that is fp32 (so
    the fp32-vs-fast comparison always compares something)."""
    name = fastpath.resolve_precision(precision, device)
    return "bf16" if name == "fp32" and precision == "auto" else name


def summarise(rounds: list[dict[str, tuple[float, int]]]) -> tuple[list[dict], list[dict]]:
    """Per measurement: median images/s with min-max; per ratio: median with min-max."""
    measurements = []
    for name in rounds[0]:
        ips = [n / s for s, n in (r[name] for r in rounds)]
        measurements.append({"measurement": name,
                             "seconds": round(statistics.median(r[name][0] for r in rounds), 4),
                             "images_per_s": round(statistics.median(ips), 1),
                             "min": round(min(ips), 1), "max": round(max(ips), 1)})
    ratios = []
    for label, (top, bottom, kind) in RATIOS.items():
        values = []
        for r in rounds:
            (s_top, n_top), (s_bottom, n_bottom) = r[top], r[bottom]
            values.append((n_top / s_top) / (n_bottom / s_bottom) if kind == "throughput"
                          else s_top / s_bottom)
        ratios.append({"ratio": label, "kind": kind, "median": round(statistics.median(values), 4),
                       "min": round(min(values), 4), "max": round(max(values), 4),
                       "per_round": [round(v, 4) for v in values]})
    return measurements, ratios


def run(args) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as err:  # CUDA asked for where there is none: the user's to fix
        raise UserError(f"--device {args.device}: {err}") from None
    bench = Bench(args.model, args.dataset, args.image_size, args.batch_size, args.per_class,
                  args.data_dir, device, args.precision, args.passes)
    bench.warm_up()
    rounds = []
    for i in range(args.repeats):
        rounds.append(bench.round())
        console.print(f"round {i + 1}/{args.repeats}: pipeline "
                      f"{bench.n / rounds[-1]['pipeline fast'][0]:.1f} img/s ({bench.fast}), "
                      f"{bench.n / rounds[-1]['pipeline fp32'][0]:.1f} img/s (fp32)")
    measurements, ratios = summarise(rounds)
    where = device if device != "cpu" else f"cpu, {torch.get_num_threads()} threads"
    if device.startswith("cuda"):
        where += f" ({torch.cuda.get_device_name(device)})"
    title = (f"perf: {args.model} at {args.image_size}px, batch {args.batch_size}, {where}, "
             f"fast path {bench.fast}, {args.repeats} interleaved rounds")
    extra = {"model": args.model, "dataset": args.dataset, "device": device,
             "image_size": args.image_size, "batch_size": args.batch_size,
             "images": bench.n, "repeats": args.repeats, "fast_precision": bench.fast,
             "passes": args.passes, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        extra["device_name"] = torch.cuda.get_device_name(device)
    if args.json:
        emit_table(ratios, title, True, extra={**extra, "measurements": measurements})
        return 0
    emit_table(measurements, title, False,
               columns=["measurement", "seconds", "images_per_s", "min", "max"])
    emit_table(ratios, "ratios (median and min-max over rounds)", False,
               columns=["ratio", "kind", "median", "min", "max"])
    return 0
