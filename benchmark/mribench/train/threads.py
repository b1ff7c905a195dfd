"""How many CPU threads a cell's torch uses: the share of the machine the cell was given.

Cells that share a machine (Ray tasks with `cpus_per_cell`, `--shard` jobs side by side on one
node, parallel `tune` processes, two invocations) each default to torch's own thread count, one
per core; N such processes on N cores then fight over every core and deliver less than half of
what one process does alone (docs/speed.md measures it). Each cell therefore sets torch's
intra-op threads, and its loader's worker count, from its share, decided in this order:

1. `--threads N` on the command line, else `BENCHMARK_THREADS=N` (the way to tell side-by-side
   shards or parallel tune processes their share: cores / processes per node);
2. the executor's share: a Ray task's `cpus_per_cell`;
3. `OMP_NUM_THREADS`, the usual knob (torch honours it too);
4. the cores this process may run on (its CPU affinity mask, which a batch scheduler's or
   `taskset`'s CPU set narrows), when the cell runs alone.

The count is logged as the cell's parameter `torch_threads`, with `torch_threads_from`.
"""
from __future__ import annotations

import math
import os

from mribench import environment

_requested: int | None = None  # --threads of this invocation
_share: int | None = None  # the threads the current cell runs with (None: not set yet)


def request(threads: int | None) -> None:
    """Record `--threads N` for the cells this process runs (None: not given)."""
    global _requested
    _requested = threads


def requested() -> int | None:
    return _requested


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask; all of them where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def decide(cpus: float | None = None) -> tuple[int, str]:
    """(threads, where the number came from) for a cell given `cpus` CPUs by its executor
    (None: no executor share, e.g. the local executor)."""
    if _requested:
        return _requested, "--threads"
    env = environment.threads()
    if env:
        return env, environment.THREADS
    if cpus:  # Ray may hand out fractions of a CPU: at least one thread
        return max(1, math.floor(cpus)), "cpus_per_cell"
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    return machine_cores(), "machine cores"


def apply(threads: int) -> int:
    """Set torch's intra-op threads for the cells that follow in this process."""
    import torch

    global _share
    torch.set_num_threads(threads)
    _share = threads
    return threads


def cell_cpus() -> int:
    """The CPUs of the cell running now (its threads), for the loader's worker count; the
    machine's cores where no cell set a share (a script calling the pipeline directly)."""
    return _share or machine_cores()


def apply_and_log(cpus: float | None = None) -> int:
    """Decide, set and log (into the active cell or trial run) the cell's threads."""
    from mribench import tracking

    threads, source = decide(cpus)
    apply(threads)
    tracking.log_params({"torch_threads": threads, "torch_threads_from": source})
    return threads
