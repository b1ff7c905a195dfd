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

import copy
import random
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

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
    discarded: str | None = None  # why a checkpoint found at `open` was set aside

    @classmethod
    def open(cls, root: Path, run_key: str, every: int,
             model: torch.nn.Module | None = None) -> "Checkpoints":
        """The cell's checkpoint, when there is one it can resume from. One that cannot be read
        (truncated, empty, not a checkpoint), was written by another format or cell, or does not
        fit `model` (a library upgrade renamed or resized a layer) is said in one line naming
        the file and why, and moved aside (`set_aside`): the cell starts from epoch 0."""
        ckpt = cls(Path(root) / run_key, run_key, every)
        if not ckpt.file.exists() and not ckpt.file.is_symlink():
            return ckpt
        try:
            if not ckpt.file.is_file():
                raise ValueError("not a regular file")
            saved = torch.load(ckpt.file, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a damaged file
            ckpt.set_aside(f"cannot be read ({_why(err)})")
            return ckpt
        problem = unusable(saved, run_key, model)
        if problem:
            ckpt.set_aside(problem)
            return ckpt
        ckpt.saved = saved
        ckpt.extra = dict(saved.get("extra", {}))
        return ckpt

    def set_aside(self, reason: str) -> Path | None:
        """Rename the checkpoint to `<root>/<run_key>.last.pt.corrupt-<UTC time>` (kept for
        a look, outside the folder a finished cell removes) and say so in one line."""
        self.discarded = reason
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.folder.parent / f"{self.run_key}.last.pt.corrupt-{stamp}"
        try:
            self.file.rename(target)
        except OSError as err:
            self.every = 0  # never overwrite what could not be kept
            console.print(f"checkpoint {self.file} {reason}; it could not be moved aside "
                          f"({err.strerror or err}), so checkpoints are off for this cell; "
                          "training starts from epoch 0", style="yellow", markup=False,
                          highlight=False)
            return None
        console.print(f"checkpoint {self.file} {reason}: moved aside to {target.name}; "
                      "training starts from epoch 0", style="yellow", markup=False,
                      highlight=False)
        return target

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


@dataclass
class MidEpoch:
    """Where a signal stopped an epoch: the batches of it trained, their running sums (loss,
    correct, divergence streak), and the random states at the epoch's start (its order is
    replayed) and after those batches (where training goes on)."""
    batch: int
    sums: dict
    rng_epoch_start: dict
    rng_after: dict | None = None  # read back on resume; written as the state at the write


@dataclass
class FitState:
    """Where `fit` stands: what a checkpoint saves besides the weights, optimizer, scheduler and
    scaler (`snapshot`), and what a resumed fit starts from. `fit` advances it epoch by epoch."""
    epoch: int = 0  # epochs finished
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = float("inf")
    best_state: dict | None = None  # the best-validation weights so far
    waited: int = 0  # epochs since the best one (early stopping's patience)
    mid_epoch: MidEpoch | None = None  # resuming inside epoch `epoch + 1`

    @classmethod
    def from_saved(cls, saved: dict) -> "FitState":
        mid = (MidEpoch(saved["batch"], saved["sums"], saved["rng_epoch_start"], saved["rng"])
               if saved["batch"] else None)
        return cls(saved["epoch"], list(saved["history"]), saved["best_epoch"],
                   saved["best_loss"], saved["best_state"], saved["waited"], mid)

    def saved(self, rng: dict, mid: MidEpoch | None = None) -> dict:
        """The checkpoint's loop entries (the file format's keys, unchanged since format 1);
        `rng`: the random state now; `mid`: written inside an epoch, after `mid.batch` batches."""
        out = {"epoch": self.epoch, "history": self.history, "best_epoch": self.best_epoch,
               "best_loss": self.best_loss, "best_state": self.best_state,
               "waited": self.waited, "batch": 0, "rng": rng}
        if mid is not None:
            out.update(batch=mid.batch, sums=mid.sums, rng_epoch_start=mid.rng_epoch_start)
        return out

    @property
    def epochs_begun(self) -> int:
        """Epochs that had started when it was saved (the trainable set a resume replays)."""
        return self.epoch + bool(self.mid_epoch)

    def end_epoch(self, epoch: int, val_loss: float, weights: Callable[[], dict],
                  patience: int | None) -> bool:
        """Epoch `epoch` is done (its history row already kept): the best weights so far and
        early stopping's count. True when the patience ran out."""
        self.epoch = epoch
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.waited = val_loss, epoch, 0
            self.best_state = copy.deepcopy(weights())
            return False
        self.waited += 1
        return patience is not None and self.waited >= patience


REQUIRED = ("epoch", "model", "optimizer", "scheduler", "scaler", "history", "best_epoch",
            "best_loss", "best_state", "waited", "batch", "rng")


class CheckpointUnusable(RuntimeError):
    """A checkpoint that passed `open`'s checks but could not be restored (its optimizer state
    does not fit): it has been moved aside; the message names it, and a rerun starts over."""


def unusable(saved, run_key: str, model: torch.nn.Module | None) -> str | None:
    """Why a loaded checkpoint cannot be resumed from, or None."""
    if not isinstance(saved, dict):
        return f"is not a checkpoint (it holds a {type(saved).__name__})"
    if saved.get("format") != FORMAT:
        return (f"was written in checkpoint format {saved.get('format')!r} (this version reads "
                f"format {FORMAT})")
    if saved.get("run_key") != run_key:
        return f"belongs to another cell (run_key {saved.get('run_key')!r})"
    missing = [k for k in REQUIRED if k not in saved]
    if missing:
        return f"is incomplete (no {', '.join(missing)})"
    if model is not None:
        return _misfit(saved["model"], plain(model).state_dict())
    return None


def _misfit(saved: dict, wanted: dict) -> str | None:
    """How saved weights differ from the model's (names and shapes), or None when they fit."""
    if not isinstance(saved, dict):
        return "does not fit the model (no weights)"
    missing = [k for k in wanted if k not in saved]
    extra = [k for k in saved if k not in wanted]
    shapes = [k for k in wanted if k in saved and hasattr(saved[k], "shape")
              and tuple(saved[k].shape) != tuple(wanted[k].shape)]
    if not (missing or extra or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape, e.g. {k} {list(saved[k].shape)} where "
                     f"the model has {list(wanted[k].shape)}")
    return "does not fit the model (" + "; ".join(parts) + ")"


def _why(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


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


def snapshot(net, optimizer, scheduler, precision, loop: dict) -> dict:
    """A checkpoint's content: weights, optimizer, scheduler, scaler, and the loop's state
    (`FitState.saved`: epoch, history, best, patience, random states)."""
    scaler = getattr(precision, "scaler", None)
    return {"model": plain(net).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None, **loop}


def resume(ckpt: Checkpoints, net, optimizer, scheduler, precision, loader) -> None:
    """Load `ckpt.saved` into a fit whose trainable set is the saved one: the components'
    states, then the random states the next (or the stopped) epoch starts from. A state that
    does not load sets the file aside and raises CheckpointUnusable, naming it."""
    saved = ckpt.saved
    try:
        restore(saved, net, optimizer, scheduler, precision)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        # the weights were checked at `open`; this is the optimizer's or scheduler's state
        ckpt.set_aside(f"cannot be restored ({_why(err)})")
        raise CheckpointUnusable(
            f"checkpoint {ckpt.file} cannot be restored ({_why(err)}); it was "
            "moved aside: run the suite again to train this cell from epoch 0") from None
    set_rng(saved["rng_epoch_start" if saved["batch"] else "rng"], loader)


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
