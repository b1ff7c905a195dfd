"""Run a whole suite: expand, skip finished cells, run the rest in a parent run, summarise."""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mribench import strategies, tracking
from mribench.cell import RunOptions, prepare_once, run_cell
from mribench.config import Suite
from mribench.data import fallback
from mribench.console import console, emit_table
from mribench.engine import Diverged
from mribench.matrix import Cell, expand
from mribench.models import registry, weights

COLUMNS = ["cell", "dataset", "model", "strategy", "seed", "fold", "run_key", "status",
           "skip_reason", "test_accuracy", "seconds", "run_id", "error"]
SHOWN = ["cell", "model", "strategy", "seed", "fold", "status", "test_accuracy",
         "seconds"]  # the console table; --json and the logged summary carry every column


@dataclass(frozen=True)
class SuiteOptions:
    device: str = "cpu"
    data_dir: str | None = None
    cache_dir: str | None = None
    force: bool = False
    as_json: bool = False
    shard: tuple[int, int] = (0, 1)  # (k, n): run cells k, k+n, k+2n, ... (one of n workers)

    def mine(self, cells: list[Cell]) -> list[tuple[int, Cell]]:
        """This worker's cells with their 1-based numbers in the whole matrix."""
        k, n = self.shard
        return [(i + 1, c) for i, c in enumerate(cells) if i % n == k]


def matrix_rows(cells: list[Cell]) -> list[dict]:
    return [{"cell": i + 1, **c.tags()} for i, c in enumerate(cells)]


def dry_run(suite: Suite, as_json: bool, data_dir: str | None = None) -> int:
    suite, subs = fallback.resolve(suite, data_dir)
    fallback.announce(subs)
    cells = expand(suite)
    emit_table(matrix_rows(cells), f"{suite.name}: {len(cells)} cells (dry run)", as_json,
               extra={"experiment": suite.experiment_name})
    return 0


def run_suite(suite: Suite, opts: SuiteOptions) -> int:
    """Returns the process exit code: non-zero when any cell failed."""
    suite, subs = fallback.resolve(suite, opts.data_dir)  # before expansion: run_keys name it
    fell_back = fallback.announce(subs)
    numbered = opts.mine(expand(suite))
    cells = [c for _, c in numbered]
    base = RunOptions(device=opts.device, data_dir=opts.data_dir, cache_dir=opts.cache_dir)
    preflight(cells, base)
    exp_id = tracking.setup(suite.experiment_name)
    keys = {c.run_key for c in cells}
    stale, busy = tracking.triage_running(exp_id, keys)
    if stale:
        console.print(f"[yellow]{stale} cell run(s) left RUNNING by an interrupted invocation "
                      "were marked KILLED and will be retried")
    done = {} if opts.force else tracking.finished_keys(exp_id)
    skips = {k: ("finished earlier", run_id, acc,
                 f"finished run {run_id} exists (--force reruns it)")
             for k, (run_id, acc) in done.items()}
    skips |= {k: ("running elsewhere", run_id, None, "another live invocation on this machine "
                  f"is running it (run {run_id})") for k, run_id in busy.items()}
    shard = "" if opts.shard[1] == 1 else f" (shard {opts.shard[0]}/{opts.shard[1]})"
    console.print(f"suite [bold]{suite.name}[/]{shard}: {len(cells)} cells, experiment "
                  f"'{suite.experiment_name}' at {tracking.tracking_uri()}")
    rows = []
    params = {"suite": suite.name, "cells": len(cells), "device": opts.device,
              "force": opts.force, "shard": f"{opts.shard[0]}/{opts.shard[1]}", **fell_back}
    with tracking.parent_run(exp_id, suite.name, params) as parent_id, _progress() as progress:
        if fell_back:
            tracking.set_tags(fell_back)
        cells_bar = progress.add_task("cells", total=len(cells))
        epochs_bar = progress.add_task("epochs", total=None, visible=False)
        batches_bar = progress.add_task("batches", total=None, visible=False)
        for number, cell in numbered:
            row = {"cell": number, **cell.tags()}
            if cell.run_key in skips:
                reason, run_id, accuracy, why = skips[cell.run_key]
                console.print(f"skip {cell.title}: {why}")
                rows.append({**row, "status": "SKIPPED", "skip_reason": reason,
                             "run_id": run_id, "test_accuracy": accuracy})
                progress.advance(cells_bar)
                continue
            progress.update(cells_bar, description=cell.title)
            progress.reset(epochs_bar, total=cell.training.epochs, visible=True)
            hooks = replace(
                base, on_epoch=lambda row, n: progress.update(epochs_bar, completed=row["epoch"],
                                                              total=n),
                on_batch=lambda b, n: progress.update(batches_bar, completed=b, total=n,
                                                      visible=True))
            rows.append({**row, **_run_one(cell, hooks)})
            progress.advance(cells_bar)
        summary = pd.DataFrame(rows, columns=COLUMNS)
        tracking.log_frame(summary, "summary/cells.csv")
        failed = [r for r in rows if r["status"] == "FAILED"]
        tracking.log_metrics({"cells_failed": len(failed),
                              "cells_finished": sum(r["status"] == "FINISHED" for r in rows),
                              "cells_skipped": sum(r["status"] == "SKIPPED" for r in rows)})
    datasets = sorted({c.dataset.name for c in cells})
    shown = SHOWN if len(datasets) == 1 else SHOWN[:1] + ["dataset"] + SHOWN[1:]
    emit_table(rows, f"{suite.name} on {', '.join(datasets)}", opts.as_json, columns=shown,
               extra={"experiment": suite.experiment_name, "parent_run_id": parent_id,
                      "failed": len(failed)})
    if failed:
        console.print(f"[red]{len(failed)} cell(s) failed: "
                      + "; ".join(f"{r['dataset']}/{r['model']}/{r['strategy']}/seed "
                                  f"{r['seed']}: {r['error']}" for r in failed))
        return 1
    return 0


def preflight(cells: list[Cell], opts: RunOptions) -> None:
    """Scan and validate every dataset and find every pretrained weight file before anything is
    trained or logged, so a bad file, a missing folder or missing weights stop the suite with a
    clear error instead of failing cell after cell. It also fills the decoded-image cache that
    the cells then read (and downloads hub weights once, for users with a network)."""
    needs_weights = {(c.model.name, c.model.weights) for c in cells
                     if strategies.uses_pretrained(c.strategy)}
    missing = []
    for name, explicit in sorted(needs_weights, key=str):
        try:
            weights.resolve(registry.get(name), explicit)
        except weights.WeightsNotFound as err:  # keep going: the user learns every file at once
            missing.append(str(err))
    if len(missing) == 1:
        raise weights.WeightsNotFound(missing[0])
    if missing:
        raise weights.WeightsNotFound(
            f"pretrained weights missing for {len(missing)} models of the suite:\n\n"
            + "\n\n".join(missing))
    seen = set()
    for cell in cells:
        if (cell.dataset, cell.split, cell.preprocess) not in seen:
            seen.add((cell.dataset, cell.split, cell.preprocess))
            console.print(f"checking dataset {cell.dataset.name} ...")
            prepare_once(cell, opts)


def _run_one(cell: Cell, hooks: RunOptions) -> dict:
    start, run_ids = time.perf_counter(), []
    try:
        with tracking.cell_run(cell.title, cell.tags()) as run_id:
            run_ids.append(run_id)
            headline = run_cell(cell, hooks)
    except Exception as err:  # one cell's failure must not stop the suite
        console.print(f"[red]cell {cell.title} failed:[/] {type(err).__name__}: {err}")
        if not isinstance(err, Diverged):  # an outcome of the configuration, not a bug
            console.print(traceback.format_exc(), markup=False, highlight=False)
        return {"status": "FAILED", "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - start, "run_id": run_ids[0] if run_ids else None}
    return {"status": "FINISHED", "test_accuracy": headline.get("test_accuracy"),
            "seconds": time.perf_counter() - start, "run_id": run_id}


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)
