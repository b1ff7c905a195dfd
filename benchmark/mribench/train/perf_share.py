"""`mribench perf --concurrent N`: N cells training side by side on one CPU box against one
process that has every core.

Three ways of spending the same cores on real training epochs (our loader, the model, Adam):

- alone: one process with one torch thread per core;
- shared: N processes at once, each with its share of the cores (cores / N threads, what a Ray
  task with cpus_per_cell = cores / N or a shard with --threads cores/N gets; train/threads.py);
- shared, default threads: N processes at once, each with one thread per core (torch's default,
  what every side-by-side cell had before threads followed the share).

The worker processes start once, prepare their model and loader, warm up, and then wait; each
round tells them to run one epoch (the N at once), and the rounds are interleaved (alone,
shared, default, alone, ...) so a busy spell on a shared machine hits all three alike. A
concurrent throughput is all images over the wall time from the first start to the last end
(the processes' monotonic clocks are the machine's one clock). Ratios are per round, reported as
median with min-max.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from mribench.console import console, emit_table
from mribench.train import threads

MODES = ("alone", "shared", "shared, default threads")


def _spawn(args, threads_each: int) -> subprocess.Popen:
    spec = {"model": args.model, "dataset": args.dataset, "image_size": args.image_size,
            "batch_size": args.batch_size, "per_class": args.per_class,
            "data_dir": args.data_dir, "threads": threads_each}
    # torch.set_num_threads in the worker decides; the variables only keep OpenMP from
    # starting a pool of another size first
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_each),
           "MKL_NUM_THREADS": str(threads_each)}
    return subprocess.Popen([sys.executable, "-m", "mribench.train.perf_share", json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _ask(procs: list[subprocess.Popen]) -> list[dict]:
    """Tell every process to run one epoch (at the same moment), then read each one's times."""
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return [_reply(p) for p in procs]


def _reply(p: subprocess.Popen) -> dict:
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"perf worker {p.pid} ended early (exit {p.wait()}); its error is above")
    return json.loads(line)


def _throughput(replies: list[dict]) -> tuple[float, float]:
    """(all images / wall time from first start to last end, that wall time)."""
    wall = max(r["end"] for r in replies) - min(r["start"] for r in replies)
    return sum(r["images"] for r in replies) / wall, wall


def run(args) -> int:
    n = args.concurrent
    cores = threads.machine_cores()
    share = max(1, cores // n)
    from mribench import data
    from mribench.config.schema import DatasetConfig, PreprocessConfig, SplitConfig

    # decode the images once here, so the workers only open the cache
    data.prepare(DatasetConfig(name=args.dataset, subset_per_class=args.per_class),
                 SplitConfig(protocol="official", val_fraction=0.2),
                 PreprocessConfig(image_size=args.image_size), seed=0, fold=None,
                 data_dir=args.data_dir)
    groups = {"alone": [_spawn(args, cores)], "shared": [_spawn(args, share) for _ in range(n)],
              "shared, default threads": [_spawn(args, cores) for _ in range(n)]}
    load_before = os.getloadavg()
    rounds: list[dict[str, float]] = []
    try:
        for procs in groups.values():
            for p in procs:
                _reply(p)  # "ready": prepared and warmed up
        for i in range(args.repeats):
            rounds.append({mode: _throughput(_ask(groups[mode]))[0] for mode in MODES})
            console.print(f"round {i + 1}/{args.repeats}: "
                          + ", ".join(f"{m} {v:.1f} img/s" for m, v in rounds[-1].items()))
    finally:
        for procs in groups.values():
            for p in procs:
                p.stdin.close()
                p.wait(timeout=60)
    load_after = os.getloadavg()
    rows = [{"measurement": mode, "processes": 1 if mode == "alone" else n,
             "threads_each": cores if mode != "shared" else share,
             "images_per_s": round(statistics.median(r[mode] for r in rounds), 1),
             "min": round(min(r[mode] for r in rounds), 1),
             "max": round(max(r[mode] for r in rounds), 1)} for mode in MODES]
    ratios = []
    for mode in MODES[1:]:
        values = [r[mode] / r["alone"] for r in rounds]
        ratios.append({"ratio": f"{mode} vs alone", "median": round(statistics.median(values), 3),
                       "min": round(min(values), 3), "max": round(max(values), 3),
                       "per_round": [round(v, 3) for v in values]})
    title = (f"perf --concurrent {n}: {args.model} at {args.image_size}px, batch "
             f"{args.batch_size}, {cores} cores, {args.repeats} interleaved rounds")
    extra = {"model": args.model, "dataset": args.dataset, "cores": cores, "concurrent": n,
             "image_size": args.image_size, "batch_size": args.batch_size,
             "repeats": args.repeats, "measurements": rows,
             "load_average_before": [round(v, 2) for v in load_before],
             "load_average_after": [round(v, 2) for v in load_after]}
    if args.json:
        emit_table(ratios, title, True, extra=extra)
        return 0
    emit_table(rows, title, False)
    emit_table(ratios, "throughput ratios (median and min-max over rounds)", False,
               columns=["ratio", "median", "min", "max"])
    console.print(f"load average (1, 5, 15 min) before {extra['load_average_before']}, "
                  f"after {extra['load_average_after']}")
    return 0


def _worker(spec: dict) -> None:
    """One training process: prepare, warm up, say ready; then one epoch per 'go' line."""
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
    from mribench.models import strategies
    from mribench.models.build import build
    from mribench.train.epoch import train_one_epoch

    threads.apply(spec["threads"])
    torch.manual_seed(0)
    pre = PreprocessConfig(image_size=spec["image_size"])
    prepared = data.prepare(DatasetConfig(name=spec["dataset"],
                                          subset_per_class=spec["per_class"]),
                            SplitConfig(protocol="official", val_fraction=0.2), pre, seed=0,
                            fold=None, data_dir=spec["data_dir"])
    train = prepared.splits["train"]
    loader = data.make_loader(train, pre, AugmentConfig(rotation=10, hflip=True),
                              mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=spec["batch_size"],
                              shuffle=True, seed=0, num_workers=0, device="cpu")
    built = build(ModelConfig(name=spec["model"]), StrategyConfig(name=strategies.FULL.name),
                  len(prepared.classes), image_size=spec["image_size"])
    built.train()
    params = [p for g in built.param_groups(1e-4) for p in g["params"]]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    loss = nn.CrossEntropyLoss()
    x, y = next(iter(loader))
    train_one_epoch(built.model, [(x, y)], optimizer, loss, "cpu")  # allocator, lazy inits
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        start = time.monotonic()
        train_one_epoch(built.model, loader, optimizer, loss, "cpu")
        print(json.dumps({"start": start, "end": time.monotonic(), "images": len(train)}),
              flush=True)


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
