"""The BENCHMARK_* environment settings, parsed in one place, with errors naming the variable.

Nothing is read at import time, so `--help` works whatever the environment holds; `check()`
runs before any command does its work, so a bad value stops it with one line and exit code 2.
"""
from __future__ import annotations

import os


def offline() -> bool:
    """BENCHMARK_OFFLINE=1 (or HF_HUB_OFFLINE=1): never try to download weights. Anything but
    0/1 is an error: `BENCHMARK_OFFLINE=true` quietly going online would be the opposite of
    what its author meant."""
    raw = os.environ.get("BENCHMARK_OFFLINE", "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"BENCHMARK_OFFLINE={raw!r} is not 0 or 1; set it to 1 to never "
                         "download weights, 0 or unset to allow it")
    return raw == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def threads() -> int | None:
    """BENCHMARK_THREADS=N: torch threads per cell (a cell's share of the machine, e.g. cores /
    shards when several `--shard` jobs or `tune` processes run side by side on one node)."""
    raw = os.environ.get("BENCHMARK_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"BENCHMARK_THREADS={raw!r} is not a positive whole number; set it to "
                         "the CPU threads each cell may use (e.g. cores / processes per node), "
                         "or unset it")
    return int(raw)


def check() -> None:
    offline()
    threads()
