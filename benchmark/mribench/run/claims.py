"""Claims: at most one FINISHED run per cell, whatever runs at once.

Before a process trains a cell it claims it: under the store's lock (one machine) it re-reads
the cell's runs (`run_key` tag) and takes the cell only if no FINISHED run counts and no live
owner holds a RUNNING one; a RUNNING run whose owner is dead is closed as KILLED and taken
over. The claim is a RUNNING run tagged with its owner (`host`, `pid`, and a `heartbeat` time
refreshed while it is held), created in the same critical section. It then re-reads the runs
once more: a claimer on another machine (which the file lock does not reach) that slipped in
between makes this one back off, so two claims at once can both back off but never both train.

An owner on this machine is alive while its pid is; one on another machine while its heartbeat
is younger than STALE_AFTER_S. The local run loop and a distributed executor's tasks share
`claim`; `reap` closes every run (cell, trial, parent) left RUNNING by a dead owner.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from mribench import tracking
from mribench.matrix import Cell
from mribench.run import stopping
from mribench.tracking import locks

HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0  # another machine's claim without a heartbeat for this long is dead
DEAD = "interrupted: its invocation died ({})"


@dataclass(frozen=True)
class Claim:
    """`run_id`: the RUNNING run this process now owns (resume it with tracking.cell_run);
    None when the cell is not this process's to train, `reason` and `holder` say why."""
    run_id: str | None
    reason: str = ""  # "finished earlier" | "running elsewhere"
    holder: str | None = None  # the run that has it
    accuracy: float | None = None  # the holder's test accuracy, when finished


def owner_tags() -> dict[str, str]:
    return {"host": socket.gethostname(), "pid": str(os.getpid()),
            "heartbeat": f"{time.time():.0f}"}


def owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process that owns a RUNNING run (by its tags) is still alive."""
    pid = tags.get("pid", "")
    if tags.get("host") == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's live process
        return True
    try:
        return time.time() - float(tags.get("heartbeat", "")) < STALE_AFTER_S
    except ValueError:
        return False  # no heartbeat: an old run, or one whose owner cannot be checked


def _owner(tags: dict[str, str]) -> str:
    return f"{tags.get('host', '?')} pid {tags.get('pid', '?')}"


def claim(experiment_id: str, cell: Cell, *, parent_run_id: str | None = None,
          finished_since_ms: int = 0, tags: dict[str, str] | None = None) -> Claim:
    """Claim `cell` in the experiment, or say who has it.

    FINISHED runs that started at or after `finished_since_ms` count as done (0: all of them;
    `--force` passes the invocation's start, so it reruns older results but never repeats what
    a concurrent invocation has just finished). `tags` go on the claimed run from its start
    (a Ray task's identity, see executors)."""
    run_id = None
    try:  # a stop is held until the claim is stored and its id known, then closes it
        with locks.held(tracking.store_uri()), stopping.held():
            taken = _taken(experiment_id, cell.run_key, finished_since_ms, close_dead=True)
            if taken:
                return taken
            run_id = tracking.create_run(experiment_id, cell.title,
                                         {**cell.tags(), "role": "cell", **owner_tags(),
                                          **(tags or {})},
                                         parent_run_id)
            rival = _taken(experiment_id, cell.run_key, finished_since_ms, mine=run_id)
            if rival:  # a claimer on another machine got in between: leave the cell to it
                tracking.close_run(run_id, "KILLED", f"claim withdrawn: run {rival.holder} has it")
                return rival
    except stopping.Stopped as stop:
        if run_id:
            close_stopped(run_id, stop)
        raise
    return Claim(run_id)


def close_stopped(run_id: str, stop: stopping.Stopped) -> None:
    """End a claimed run KILLED for `stop` if nothing has ended it yet (the stop came before
    its cell started it)."""
    tracking.close_if_running(run_id, "KILLED", f"Stopped: {stop}", stop.name)


def _taken(experiment_id: str, run_key: str, since_ms: int, *, close_dead: bool = False,
           mine: str | None = None) -> Claim | None:
    runs = [r for r in tracking.runs_of_key(experiment_id, run_key) if r.run_id != mine]
    done = sorted((r for r in runs if r.status == "FINISHED" and r.start_time >= since_ms),
                  key=lambda r: r.start_time)
    if done:
        return Claim(None, "finished earlier", done[-1].run_id,
                     done[-1].metrics.get("test_accuracy"))
    for run in runs:
        if run.status != "RUNNING":
            continue
        if owner_alive(run.tags):
            return Claim(None, "running elsewhere", run.run_id)
        if close_dead:
            tracking.close_run(run.run_id, "KILLED", DEAD.format(_owner(run.tags)))
    return None


def reap(experiment_id: str) -> int:
    """Close every run of the experiment left RUNNING by a dead owner (cells, tuning trials,
    suite and tune parents) as KILLED; returns how many. Runs without owner tags are left."""
    closed = 0
    for run in tracking.running_runs(experiment_id):
        if "role" in run.tags and not owner_alive(run.tags):
            tracking.close_run(run.run_id, "KILLED", DEAD.format(_owner(run.tags)))
            closed += 1
    return closed


class _Heartbeat:
    """One daemon thread per process refreshing the `heartbeat` tag of the runs it holds, so
    other machines can tell a live claim from a dead one."""

    def __init__(self) -> None:
        self.runs: set[str] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, run_id: str) -> None:
        with self.lock:
            self.runs.add(run_id)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="mribench-heartbeat",
                                               daemon=True)
                self.thread.start()

    def discard(self, run_id: str) -> None:
        with self.lock:
            self.runs.discard(run_id)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self.lock:
                runs = sorted(self.runs)
            for run_id in runs:
                try:
                    tracking.set_run_tag(run_id, "heartbeat", f"{time.time():.0f}")
                except Exception:  # a store outage: the next beat tries again
                    pass


_heartbeat = _Heartbeat()


@contextmanager
def held(run_id: str) -> Iterator[str]:
    """Keep the claim on `run_id` visibly alive while the block runs."""
    _heartbeat.add(run_id)
    try:
        yield run_id
    finally:
        _heartbeat.discard(run_id)
