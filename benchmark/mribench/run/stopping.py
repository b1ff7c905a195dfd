"""SIGTERM and SIGINT stop the current work cleanly instead of killing the process mid-write.

SLURM, Kubernetes and `docker stop` send SIGTERM; Ctrl-C sends SIGINT. Inside `on_signals`,
either raises `Stopped` in the main thread wherever it is (inside a call to the tracking store
it waits for the call to end: `held`); the run contexts in `tracking` end
their MLflow runs KILLED with the signal as the reason, and the command says what was kept and
exits 128 + the signal number (143, 130). `Stopped` is a KeyboardInterrupt, so libraries that
clean up on Ctrl-C (Optuna marks the trial FAIL, DataLoader stops its workers) do so for SIGTERM
too. A second signal during that clean-up ends the process at once (the default action).
"""
from __future__ import annotations

import functools
import logging
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, ParamSpec, TypeVar

SIGNALS = (signal.SIGTERM, signal.SIGINT)
P = ParamSpec("P")
R = TypeVar("R")


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {self.name}")
        _quiet_library_tracebacks()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _AfterStop(logging.Filter):
    """Drops a log record whose exception comes from the stop (a library cleaning up logs
    "Error closing cursor" with a traceback whose cause is the Stopped): the command says what
    happened in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        seen = 0
        while err is not None and seen < 20:
            if isinstance(err, KeyboardInterrupt):
                return False
            err, seen = err.__context__ or err.__cause__, seen + 1
        return True


_AFTER_STOP = _AfterStop()


def _quiet_library_tracebacks() -> None:
    """Put `_AfterStop` on every logging handler there is now (the clean-up that follows a
    stop runs with these)."""
    handlers = {logging.lastResort, *logging.getLogger().handlers}
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers.update(getattr(logger, "handlers", []))
    for handler in handlers:
        if handler is not None and _AFTER_STOP not in handler.filters:
            handler.addFilter(_AFTER_STOP)


class _Hold:
    depth = 0  # how many `held` blocks the main thread is in
    signum: int | None = None  # a stop that arrived inside one


def _raise_stopped(signum: int, _frame) -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if _Hold.depth:  # inside a store call: `held` raises it when the call has ended
        _Hold.signum = _Hold.signum or signum
        return
    raise Stopped(signum)


@contextmanager
def held() -> Iterator[None]:
    """Hold a stop until the block ends: a SIGTERM/SIGINT that arrives meanwhile raises
    `Stopped` after the block, not halfway through it (a second one still ends the process at
    once). For calls into the tracking store: interrupted inside a SQLite transaction or read,
    MLflow leaves the database locked ("database is locked"), so the run it was writing can no
    longer be closed and would stay RUNNING. Wrap the assignment of a value the clean-up needs
    (a new run's id) too, so the stop cannot land between the call and the name. Main thread
    only (handlers run there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Hold.depth += 1
    try:
        yield
    finally:
        _Hold.depth -= 1
        if not _Hold.depth and _Hold.signum is not None:
            signum, _Hold.signum = _Hold.signum, None
            raise Stopped(signum)


def holding(function: Callable[P, R]) -> Callable[P, R]:
    """`function` with every call `held`: for the functions that call the tracking store."""
    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with held():
            return function(*args, **kwargs)
    return call


@contextmanager
def on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into `Stopped` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _raise_stopped)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
