"""The BENCHMARK_* environment settings, parsed in one place, with errors naming the variable.

Nothing is read at import time, so `--help` works whatever the environment holds; `check()`
runs before any command does its work, so a bad value stops it with one line and exit code 2.
"""
from __future__ import annotations

import os

from mribench.errors import UserError


def offline() -> bool:
    """BENCHMARK_OFFLINE=1 (or HF_HUB_OFFLINE=1): never try to download weights. Anything but
    0/1 is an error: `BENCHMARK_OFFLINE=true` quietly going online would be the opposite of
    what its author meant."""
    raw = os.environ.get("BENCHMARK_OFFLINE", "").strip()
    if raw not in ("", "0", "1"):
        raise UserError(f"BENCHMARK_OFFLINE={raw!r} is not 0 or 1; set it to 1 to never "
                         "download weights, 0 or unset to allow it")
    return raw == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def threads() -> int | None:
    """BENCHMARK_THREADS=N: torch threads per cell (a cell's share of the machine, e.g. cores /
    shards when several `--shard` jobs or `tune` processes run side by side on one node)."""
    raw = os.environ.get("BENCHMARK_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"BENCHMARK_THREADS={raw!r} is not a positive whole number; set it to "
                         "the CPU threads each cell may use (e.g. cores / processes per node), "
                         "or unset it")
    return int(raw)


def check() -> None:
    offline()
    threads()


# the variables only named here: every module reads them through the functions below
DATA_DIR = "BENCHMARK_DATA_DIR"
CACHE_DIR = "BENCHMARK_CACHE_DIR"
WEIGHTS_DIR = "BENCHMARK_WEIGHTS_DIR"
STORE_PROBE_S = "BENCHMARK_STORE_PROBE_S"
THREADS = "BENCHMARK_THREADS"


def debug() -> bool:
    """BENCHMARK_DEBUG set to anything: a failing command shows its traceback."""
    return bool(os.environ.get("BENCHMARK_DEBUG"))


def data_dir() -> str | None:
    """BENCHMARK_DATA_DIR: where datasets live when --data-dir does not say (data/locate.py)."""
    return os.environ.get(DATA_DIR) or None


def cache_dir() -> str | None:
    """BENCHMARK_CACHE_DIR: the on-disk cache folder when --cache-dir does not say."""
    return os.environ.get(CACHE_DIR) or None


def weights_dir() -> str | None:
    """BENCHMARK_WEIGHTS_DIR: a folder of pretrained weight files (models/weights.py)."""
    return os.environ.get(WEIGHTS_DIR) or None


def predict_device() -> str:
    """BENCHMARK_PREDICT_DEVICE: the device a logged model served by MLflow predicts on."""
    return os.environ.get("BENCHMARK_PREDICT_DEVICE", "cpu")


def store_probe_seconds() -> float:
    """BENCHMARK_STORE_PROBE_S: how long a tracking server may take to answer (default 10)."""
    raw = os.environ.get(STORE_PROBE_S, "").strip()
    if not raw:
        return 10.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise UserError(f"{STORE_PROBE_S}={raw!r} is not a positive number of seconds; set it "
                        "to how long a tracking server may take to answer, or unset it")
    return seconds
