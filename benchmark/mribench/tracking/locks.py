"""Cross-process locks on one machine (the `filelock` package) for shared stores.

A store's lock serialises what must not interleave between invocations on this machine:
creating a fresh SQLite store (MLflow's and Optuna's table creation race otherwise:
"duplicate column name"), and checking-then-claiming a cell or a tuning trial. For a SQLite
file the lock sits next to it (`mlflow.db.lock`), so it covers every process that uses that
file; for a server store it sits in a per-user folder keyed by a hash of the URI (the URI,
which may hold a password, is never written). File locks do not reach across machines; the
claim protocol in `claims` re-checks the store after claiming for that.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

WAIT_S = 900  # the critical sections are a few store calls; a server outage can stretch them
_locks: dict[Path, FileLock] = {}


class LockTimeout(RuntimeError):
    pass


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///path` URI (also `sqlite:///file:path?mode=ro&uri=true`),
    else None (a server, or SQLite in memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    path = path[len("file:"):] if path.startswith("file:") else path
    return Path(path).resolve() if path and path != ":memory:" else None


def lock_path(uri: str) -> Path:
    db = sqlite_file(uri)
    if db is not None:
        return db.with_name(db.name + ".lock")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mribench" / "locks"
    return base / f"{hashlib.sha256(uri.encode()).hexdigest()[:24]}.lock"


def store_lock(uri: str) -> FileLock:
    """The lock of the store at `uri` (reentrant within a process)."""
    path = lock_path(uri)
    if path not in _locks:
        path.parent.mkdir(parents=True, exist_ok=True)
        _locks[path] = FileLock(path, timeout=WAIT_S)
    return _locks[path]


@contextmanager
def held(uri: str) -> Iterator[None]:
    """The store's lock for the block, with a clear error when it cannot be had."""
    lock = store_lock(uri)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(f"waited {WAIT_S} s for the lock {lock.lock_file}: another invocation "
                          "on this machine holds it; if none runs, delete that file") from None
    try:
        yield
    finally:
        lock.release()
