"""Checkpoints of one cell's training, so a killed cell resumes where it stopped.

`fit` writes one file per cell (`<folder>/<run_key>/last.pt`, atomically: a kill mid-write keeps
the previous one) every `training.checkpoint_every` epochs: the weights, optimizer, scheduler and
gradient-scaler states, early-stopping state, the best weights so far, the history, and every
random state the next epoch draws from (torch, CUDA, numpy, python, and the training loader's own
generators, which decide its order and augmentations). Restoring all of them makes the remaining
epochs exactly the ones an uninterrupted run trains (bit for bit on CPU).

SIGTERM (SLURM preemption, `docker stop`) and Ctrl-C during training are deferred to the end of
the running batch, where a checkpoint of that batch position is written (the loader's epoch
order is replayed and the batches already trained are skipped on resume); then the usual clean
stop follows (`Stopped`: the run ends KILLED, exit 143 / 130). A second signal stops at once.
"""
from __future__ import annotations

import random
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mribench.console import console
from mribench.files import atomic_write
from mribench.run import stopping

FORMAT = 1  # bumped when the file's content changes: an older file is ignored, never misread


@dataclass
class Checkpoints:
    """One cell's checkpoint file: found at `open`, written by `fit`, removed when the cell ends."""
    folder: Path  # <root>/<run_key>
    run_key: str
    every: int  # epochs between writes; 0: never
    saved: dict | None = None  # the checkpoint this run resumes from
    extra: dict = field(default_factory=dict)  # the caller's own per-epoch state, saved along
    stop_signal: int | None = None  # a deferred SIGTERM/SIGINT, acted on at the batch's end
    # set by `fit` on resume: batches of the current epoch to skip, their sums, the RNG then
    skip: int = 0
    sums: dict | None = None
    rng_after_skip: dict | None = None

    @classmethod
    def open(cls, root: Path, run_key: str, every: int) -> "Checkpoints":
        ckpt = cls(Path(root) / run_key, run_key, every)
        if ckpt.file.is_file():
            try:
                saved = torch.load(ckpt.file, map_location="cpu", weights_only=True)
            except Exception:  # a damaged or foreign file is never trusted: train from epoch 0
                saved = None
            if saved and saved.get("format") == FORMAT and saved.get("run_key") == run_key:
                ckpt.saved = saved
                ckpt.extra = dict(saved.get("extra", {}))
        return ckpt

    @property
    def file(self) -> Path:
        return self.folder / "last.pt"

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch % self.every == 0

    def write(self, state: dict) -> None:
        """Write atomically. A folder that cannot be written (read-only, full) turns checkpoints
        off for the cell with one line, as the pixel store degrades: the cell still trains and
        logs everything; only a mid-cell resume after a kill is lost."""
        state = {"format": FORMAT, "run_key": self.run_key, "extra": self.extra, **state}
        try:
            atomic_write(self.file, lambda fh: torch.save(state, fh))
        except OSError as err:
            self.every = 0
            console.print(f"checkpoints off for this cell: cannot write {self.file}: "
                          f"{err.strerror or err}", style="yellow", markup=False, highlight=False)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def describe(self, epochs: int) -> str:
        """Where the saved checkpoint stands: 'epoch 2 of 5' (done), or 'epoch 3 of 5, batch 7'
        (stopped by a signal after batch 7 of epoch 3)."""
        s = self.saved or {}
        if s.get("batch"):
            return f"epoch {s['epoch'] + 1} of {epochs}, batch {s['batch']}"
        return f"epoch {s.get('epoch', 0)} of {epochs}"


def plain(net: torch.nn.Module) -> torch.nn.Module:
    """The module under torch.compile's wrapper: its state keys do not depend on compiling."""
    return getattr(net, "_orig_mod", net)


def loader_generators(loader) -> list[torch.Generator]:
    """The torch generators a training loader draws its order (and augmentation seeds) from."""
    inner = getattr(loader, "loader", loader)  # DeviceLoader wraps a DataLoader
    found = [getattr(inner, "generator", None), getattr(inner.sampler, "gen", None),
             getattr(inner.sampler, "generator", None)]
    return [g for g in found if isinstance(g, torch.Generator)]


def rng_state(loader) -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": list(random.getstate()),
            "loader": [g.get_state() for g in loader_generators(loader)]}


def set_global_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def set_rng(state: dict, loader) -> None:
    set_global_rng(state)
    for gen, saved in zip(loader_generators(loader), state["loader"]):
        gen.set_state(saved)


def snapshot(net, optimizer, scheduler, precision, loop: dict, epoch: int) -> dict:
    """Everything but the random states: weights, optimizer, scheduler, scaler, loop state."""
    scaler = getattr(precision, "scaler", None)
    return {"epoch": epoch, "model": plain(net).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None, **loop}


def restore(saved: dict, net, optimizer, scheduler, precision) -> None:
    plain(net).load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    scaler = getattr(precision, "scaler", None)
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])


@contextmanager
def deferred_signals(ckpt: Checkpoints | None) -> Iterator[None]:
    """Inside a suite's clean-stop handling (`stopping.on_signals`), a signal during training
    is noted instead of raised, so `fit` can checkpoint the batch it is on before stopping.
    Elsewhere (no checkpoints, not the main thread, another handler) nothing changes."""
    if ckpt is None or ckpt.every == 0 or \
            threading.current_thread() is not threading.main_thread() or \
            any(signal.getsignal(s) is not stopping._raise_stopped for s in stopping.SIGNALS):
        yield
        return

    def note(signum: int, frame) -> None:
        if ckpt.stop_signal is not None:  # the second one: stop now
            stopping._raise_stopped(signum, frame)
        ckpt.stop_signal = signum

    for sig in stopping.SIGNALS:
        signal.signal(sig, note)
    try:
        yield
    finally:
        for sig in stopping.SIGNALS:  # after a stop they stay at the default (see stopping)
            if signal.getsignal(sig) is note:
                signal.signal(sig, stopping._raise_stopped)
        if ckpt.stop_signal is not None:  # noted after the last check: stop as it asked
            signum, ckpt.stop_signal = ckpt.stop_signal, None
            stopping._raise_stopped(signum, None)


def stop_if_signalled(ckpt: Checkpoints | None, write) -> None:
    """After a batch or an epoch: a noted signal writes the checkpoint `write()` gives, then
    stops the cell as the signal would have."""
    if ckpt is None or ckpt.stop_signal is None:
        return
    signum, ckpt.stop_signal = ckpt.stop_signal, None
    for sig in stopping.SIGNALS:  # a second signal during the write stops at once
        signal.signal(sig, signal.SIG_DFL)
    ckpt.write(write())
    raise stopping.Stopped(signum)
