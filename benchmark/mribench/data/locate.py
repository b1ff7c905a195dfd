"""Where a dataset lives: suite value, then --data-dir, then BENCHMARK_DATA_DIR, then ./data."""
from __future__ import annotations

from pathlib import Path

from mribench import environment
from mribench.data.registry import KNOWN
from mribench.data.samples import DataError

ENV_DATA_DIR = environment.DATA_DIR
ENV_CACHE_DIR = environment.CACHE_DIR


def candidate_dirs(data_dir: str | None, must_exist: bool = True) -> list[tuple[str, Path]]:
    """The data directories in priority order, each with where the value came from.

    A folder the user named explicitly must exist: silently falling through to
    BENCHMARK_DATA_DIR would train on other data than the user asked for.
    """
    out = []
    if data_dir:
        if must_exist and not Path(data_dir).is_dir():
            raise DataError(f"--data-dir {data_dir}: no such folder ({Path(data_dir).resolve()})")
        out.append(("--data-dir", Path(data_dir)))
    if environment.data_dir():
        out.append((ENV_DATA_DIR, Path(environment.data_dir())))
    out.append(("default", Path("data")))
    return out


def find_root(name: str, root: str | None, data_dir: str | None) -> Path:
    """The folder holding dataset `name` (a known set's folder, or a user root), or DataError."""
    if root:
        path = Path(root)  # relative to the current directory
        if not path.is_dir():
            raise DataError(f"dataset {name!r}: root folder {path.resolve()} does not exist")
        return path.resolve()
    if name not in KNOWN:
        raise DataError(f"dataset {name!r} is not a known dataset and declares no root or manifest")
    bundled = KNOWN[name].bundled
    if bundled:
        if not bundled.is_dir():
            raise DataError(f"dataset {name!r} ships with the package at {bundled}, which is "
                            "missing: reinstall the package")
        return bundled
    folder = KNOWN[name].folder
    tried = []
    for source, base in candidate_dirs(data_dir):
        path = base / folder
        if path.is_dir():
            return path.resolve()
        tried.append(f"{path.resolve()} ({source})")
    raise DataError(
        f"dataset {name!r} not found; looked in: {', '.join(tried)}. "
        f"Fetch it with `mribench data fetch {name} --dest DIR`, then pass --data-dir DIR "
        f"or set {ENV_DATA_DIR}=DIR")


def where(name: str, data_dir: str | None) -> Path | None:
    """The folder of known dataset `name`, or None when it is not found (an explicit data_dir
    that does not exist is still an error)."""
    candidate_dirs(data_dir)
    try:
        return find_root(name, None, data_dir)
    except DataError:
        return None


def cache_root(cache_dir: str | None) -> Path:
    """The on-disk cache folder: argument, then BENCHMARK_CACHE_DIR, then ./.cache/mribench."""
    return Path(cache_dir or environment.cache_dir() or ".cache/mribench").resolve()
