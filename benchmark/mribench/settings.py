"""The BENCHMARK_* environment settings, parsed in one place, with errors naming the variable.

Nothing is read at import time, so `--help` works whatever the environment holds; `check()`
runs before any command does its work, so a bad value stops it with one line and exit code 2.
"""
from __future__ import annotations

import os

DEFAULT_CACHE_MEMORY_MB = 4096


def cache_memory_bytes() -> int:
    """BENCHMARK_CACHE_MEMORY_MB: decoded images kept in memory per process (0 = none)."""
    raw = os.environ.get("BENCHMARK_CACHE_MEMORY_MB", "").strip()
    if not raw:
        return DEFAULT_CACHE_MEMORY_MB * 2**20
    if not raw.isdigit():
        raise ValueError(f"BENCHMARK_CACHE_MEMORY_MB={raw!r} is not a whole number of megabytes; "
                         f"set it to e.g. {DEFAULT_CACHE_MEMORY_MB} (0 turns the memory cache off)"
                         " or unset it")
    return int(raw) * 2**20


def check() -> None:
    cache_memory_bytes()
