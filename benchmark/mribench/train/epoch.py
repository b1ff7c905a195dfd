"""One training pass over a loader (`train_one_epoch`), and the divergence that stops it.

Loss and correct counts stay on the device and are read every few batches (`sync_every`), where
divergence is checked too. With a checkpoint, a deferred signal writes the batch position and
stops, and a resumed epoch skips the batches its checkpoint had trained (train/checkpoints.py).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from mribench.errors import UserError
from mribench.train import checkpoints
from mribench.train.checkpoints import Checkpoints, MidEpoch
from mribench.train.precision import Precision

BatchHook = Callable[[int, int], None]  # (batches done, batches total)


class Diverged(RuntimeError):
    """Training blew up: a non-finite loss, or one above `training.max_loss` for
    `training.max_loss_batches` consecutive batches or over a whole epoch. The cell fails."""

    def __init__(self, loss: float, batch: int | None = None, batches: int | None = None,
                 epoch: int | None = None, lr: float | None = None, bound: float | None = None,
                 window: int | None = None):
        self.loss, self.batch, self.batches, self.epoch, self.lr = loss, batch, batches, epoch, lr
        self.bound, self.window = bound, window
        super().__init__(str(self))

    def at(self, epoch: int, lr: float) -> "Diverged":
        return Diverged(self.loss, self.batch, self.batches, epoch, lr, self.bound, self.window)

    def __str__(self) -> str:
        where = (f"batch {self.batch} of {self.batches}" if self.batch is not None
                 else "the validation pass" if self.window is None else "the epoch's mean")
        why = (f"loss {self.loss:.4g}" if np.isfinite(self.loss)
               else f"non-finite loss ({self.loss})")
        bound = ""
        if np.isfinite(self.loss) and self.bound is not None:
            bound = f" above training.max_loss = {self.bound:g}"
            if self.batch is not None and self.window:
                bound += f" for {self.window} consecutive batches"
        lr = f" at learning rate {self.lr:g}" if self.lr is not None else ""
        return (f"training diverged at epoch {self.epoch}, {where}{lr}: {why}{bound}; lower "
                "training.lr (or raise training.max_loss)")


def sync_every(device: str) -> int:
    """Batches between reads of the device-side sums: a CPU has nothing to wait for; on CUDA each
    read stalls the queue, so it happens every few dozen steps (and at the end of the epoch)."""
    return 1 if str(device) == "cpu" else 25


def _check(first_bad: torch.Tensor, bad_loss: torch.Tensor, batches: int,
           max_loss: float | None, window: int) -> None:
    if int(first_bad) > 0:
        raise Diverged(float(bad_loss), int(first_bad), batches, bound=max_loss, window=window)


def train_one_epoch(net: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    loss_fn: nn.Module, device: str, on_batch: BatchHook | None = None,
                    precision: Precision | None = None, max_loss: float | None = None,
                    max_loss_batches: int = 10, ckpt: Checkpoints | None = None,
                    partial: Callable[[int, dict], dict] | None = None,
                    resume: MidEpoch | None = None) -> dict:
    """One pass over `loader`. Loss and correct counts stay on the device and are read every
    `sync_every` batches, where divergence is also checked (the first bad batch is remembered on
    the device, so the report names it exactly). Diverged: a non-finite loss at once; a loss
    above `max_loss` for `max_loss_batches` batches in a row, or on the epoch's mean.
    With `ckpt`, a deferred signal writes `partial(batches done, sums)` after the batch and
    stops; a `resume`d epoch skips the batches its checkpoint had trained."""
    precision = precision or Precision("fp32", device)
    every, n = sync_every(device), len(loader)
    zero = torch.zeros((), device=device)
    loss_sum, correct, total = zero.double(), zero.long(), 0
    first_bad, bad_loss, streak = zero.long() - 1, zero.clone(), zero.long()
    skip = resume.batch if resume is not None else 0
    if skip:  # resuming mid-epoch: the sums of the batches already trained
        s = resume.sums
        loss_sum, correct, total = loss_sum + s["loss_sum"], correct + s["correct"], s["total"]
        first_bad, bad_loss = zero.long() + s["first_bad"], zero + s["bad_loss"]
        streak = zero.long() + s["streak"]

    def sums() -> dict:
        return {"loss_sum": float(loss_sum), "correct": int(correct), "total": total,
                "first_bad": int(first_bad), "bad_loss": float(bad_loss), "streak": int(streak)}

    start = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i < skip:
            continue  # the same order (its generators were restored), trained before the stop
        if skip and i == skip:  # the random state as it was at the batch the signal stopped at
            checkpoints.set_global_rng(resume.rng_after)
        if len(y) < 2:
            continue  # a last batch of one image: batch-norm cannot train on it (and 1 of N)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = net(x)
            loss = loss_fn(logits, y)
        precision.step(loss, optimizer)
        value = loss.detach().float()
        finite = torch.isfinite(value)
        if max_loss is None:
            bad = ~finite
        else:  # a spike that recovers is not divergence: count batches above the bound in a row
            streak = torch.where(finite & (value > max_loss), streak + 1, 0)
            bad = ~finite | (streak >= max_loss_batches)
        newly = bad & (first_bad < 0)
        first_bad = torch.where(newly, i + 1, first_bad)
        bad_loss = torch.where(newly, value, bad_loss)
        loss_sum += value.double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        total += len(y)
        if (i + 1) % every == 0:
            _check(first_bad, bad_loss, n, max_loss, max_loss_batches)  # one read: the device catches up here
            if on_batch:
                on_batch(i + 1, n)
        if ckpt is not None and ckpt.stop_signal is not None:
            checkpoints.stop_if_signalled(ckpt, lambda done=i + 1: partial(done, sums()))
    if skip and skip >= n:  # every batch had been trained before the stop
        checkpoints.set_global_rng(resume.rng_after)
    _check(first_bad, bad_loss, n, max_loss, max_loss_batches)
    if on_batch and n % every:
        on_batch(n, n)
    seconds = time.perf_counter() - start
    if total == 0:
        raise UserError("the training split has no batch of two or more images: use more "
                        "training images or a larger batch_size")
    mean_loss = float(loss_sum) / total
    if max_loss is not None and mean_loss > max_loss:
        raise Diverged(mean_loss, None, n, bound=max_loss, window=max_loss_batches)
    return {"loss": mean_loss, "acc": int(correct) / total, "seconds": seconds,
            "images_per_s": total / seconds}
