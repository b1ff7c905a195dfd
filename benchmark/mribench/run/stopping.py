"""SIGTERM and SIGINT stop the current work cleanly instead of killing the process mid-write.

SLURM, Kubernetes and `docker stop` send SIGTERM; Ctrl-C sends SIGINT. Inside `on_signals`,
either raises `Stopped` in the main thread wherever it is; the run contexts in `tracking` end
their MLflow runs KILLED with the signal as the reason, and the command says what was kept and
exits 128 + the signal number (143, 130). `Stopped` is a KeyboardInterrupt, so libraries that
clean up on Ctrl-C (Optuna marks the trial FAIL, DataLoader stops its workers) do so for SIGTERM
too. A second signal during that clean-up ends the process at once (the default action).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {self.name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_stopped(signum: int, _frame) -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    raise Stopped(signum)


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
