"""Remaining time while a suite runs: of the current epoch, of the current cell, of the suite.

rich's own time-remaining column needs several updates within its window, which an epoch bar
(one update per epoch, minutes apart) and a cell bar (one per cell, hours apart) never get;
these are computed from what has run so far instead:
- epoch: the current epoch's batches so far, extrapolated to all its batches;
- cell: one epoch's duration (the last finished epoch, else the current one extrapolated)
  times the epochs left; early stopping can only make it shorter;
- suite: the cells left times the mean duration of the cells that trained so far in this
  invocation (skipped cells cost nothing and are left out), else the current cell's estimate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from mribench.run.estimate import duration


@dataclass
class Eta:
    cells_left: int
    clock: Callable[[], float] = time.monotonic
    cell_seconds: list[float] = field(default_factory=list)
    _cell_start: float | None = None
    _epoch_start: float | None = None
    _epoch_seconds: float | None = None
    _epochs: tuple[int, int] = (0, 0)  # (finished, total) of the current cell
    _batches: tuple[int, int] = (0, 0)
    _pass_start: float | None = None  # the current pass over a loader (training or validation)

    def cell_started(self, epochs: int) -> None:
        now = self.clock()
        self._cell_start = self._epoch_start = self._pass_start = now
        self._epoch_seconds, self._epochs, self._batches = None, (0, epochs), (0, 0)

    def cell_finished(self, trained: bool) -> None:
        if trained and self._cell_start is not None:
            self.cell_seconds.append(self.clock() - self._cell_start)
        self.cells_left = max(0, self.cells_left - 1)
        self._cell_start = None

    def epoch_finished(self, epoch: int, epochs: int) -> None:
        now = self.clock()
        if self._epoch_start is not None:
            self._epoch_seconds = now - self._epoch_start
        self._epoch_start = self._pass_start = now
        self._epochs, self._batches = (epoch, epochs), (0, 0)

    def batch(self, done: int, total: int) -> None:
        if self._batches[1] and (done < self._batches[0] or total != self._batches[1]):
            # a new pass over another loader (validation) restarted the count
            self._pass_start = self.clock()
        self._batches = (done, total)

    def epoch_left(self) -> float | None:
        done, total = self._batches
        if not done or not total or self._pass_start is None:
            return None
        return (self.clock() - self._pass_start) / done * (total - done)

    def cell_left(self) -> float | None:
        finished, total = self._epochs
        per_epoch = self._epoch_seconds
        current = self.epoch_left()
        if per_epoch is None and current is not None and self._epoch_start is not None:
            per_epoch = self.clock() - self._epoch_start + current
        if per_epoch is None:
            return None
        spent = self.clock() - self._epoch_start if self._epoch_start is not None else 0.0
        return max(0.0, per_epoch * (total - finished) - spent)

    def suite_left(self) -> float | None:
        cell = self.cell_left()
        after = self.cells_left - (1 if self._cell_start is not None else 0)
        if self.cell_seconds:
            per_cell = sum(self.cell_seconds) / len(self.cell_seconds)
        elif cell is not None and self._cell_start is not None:
            per_cell = self.clock() - self._cell_start + cell
        else:
            return None
        return (cell or 0.0) + max(0, after) * per_cell

    @staticmethod
    def say(seconds: float | None, what: str) -> str:
        return "" if seconds is None else f"{what} ~{duration(seconds)} left"
