"""Run a whole suite: expand, skip finished cells, run the rest in a parent run, summarise."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mribench import tracking
from mribench.config.schema import Suite
from mribench.console import console, emit_table, esc
from mribench.data import fallback
from mribench.errors import UserError
from mribench.matrix import Cell, expand
from mribench.models import registry
from mribench.run import claims, dry_run_text, estimate, executors, layout, needs, stopping
from mribench.run.cell import RunOptions, prepare_externals, prepare_once
from mribench.run.executors import SuiteState

COLUMNS = ["cell", "dataset", "model", "strategy", "seed", "fold", "run_key", "status",
           "skip_reason", "test_accuracy", "seconds", "run_id", "error"]
SHOWN = ["cell", "model", "strategy", "seed", "fold", "status", "test_accuracy",
         "seconds", "run_id"]  # the console table; --json and the logged summary carry every
# column; run_id is what `mribench predict` / `evaluate` take


@dataclass(frozen=True)
class SuiteOptions:
    device: str = "cpu"
    data_dir: str | None = None
    cache_dir: str | None = None
    force: bool = False
    as_json: bool = False
    shard: tuple[int, int] = (0, 1)  # (k, n): run cells k, k+n, k+2n, ... (one of n workers)
    executor: str = "local"  # local: one cell after another here; ray: cells as Ray tasks
    address: str | None = None  # the Ray cluster (auto, HOST:PORT, ray://...); None: start one

    def mine(self, cells: list[Cell]) -> list[tuple[int, Cell]]:
        """This worker's cells with their 1-based numbers in the whole matrix."""
        k, n = self.shard
        return [(i + 1, c) for i, c in enumerate(cells) if i % n == k]


def matrix_rows(cells: list[Cell]) -> list[dict]:
    return [{"cell": i + 1, **c.tags()} for i, c in enumerate(cells)]


def dry_run(suite: Suite, as_json: bool, data_dir: str | None = None, device: str = "cpu",
            cost: bool = True, cache_dir: str | None = None, recalibrate: bool = False) -> int:
    """The cell matrix, what the suite needs on this machine (data, weights: run/needs.py) and,
    with `cost`, what it will cost here (run/estimate.py): one JSON document with --json."""
    suite, subs = fallback.substitute(suite, data_dir)
    fallback.announce(subs)
    cells = expand(suite)
    # the axes' share of the count, e.g. "axes: train_per_class 6 x image_size 2"
    axes = " x ".join(f"{a.name} {len(a.values)}" for a in suite.axis_list)
    title = (f"{suite.name}: {len(cells)} cells (dry run" + (f"; axes: {axes}" if axes else "")
             + ")")
    found = needs.survey(cells, data_dir)
    costs = estimate.estimate(cells, device, data_dir, cache_dir, recalibrate) if cost else None
    if as_json:
        emit_table(matrix_rows(cells), title, True,
                   extra={"experiment": suite.experiment_name,
                          "needs": {k: v for k, v in found.items() if k != "rows"},
                          "estimate": costs})
        return 0
    emit_table(matrix_rows(cells), title, False, extra={"experiment": suite.experiment_name})
    dry_run_text.needs(found)
    if costs:
        dry_run_text.costs(costs)
    return 0


def run_suite(suite: Suite, opts: SuiteOptions) -> int:
    """Returns the process exit code: non-zero when any cell failed, 128 + N after signal N."""
    state = SuiteState()
    try:
        with stopping.on_signals():
            return _run_suite(suite, opts, state)
    except stopping.Stopped as stop:
        _say_stopped(suite, stop, state)
        return stop.exit_code
    except Exception as err:
        reason = err.reason if isinstance(err, tracking.StoreFailed) else tracking.store_failure(err)
        if reason is None:
            raise
        raise tracking.StoreFailed(_store_failed(suite, reason, state)) from None


def _store_failed(suite: Suite, reason: str, state: SuiteState) -> str:
    """One line: what failed, where, what is safe, how to resume."""
    done = sum(r["status"] == "FINISHED" for r in state.rows)
    running = f" while cell {state.current[0].title} was running" if state.current else ""
    return (f"the tracking store {tracking.tracking_uri()} failed{running}: {reason}. "
            f"The {done} cell(s) this invocation finished are safe in it; once it works again "
            f"(free disk space, restart the server), run the same command to resume: finished "
            f"cells are skipped (`{resume_command(suite.name)}`)")


def _run_suite(suite: Suite, opts: SuiteOptions, state: SuiteState) -> int:
    suite, subs = fallback.substitute(suite, opts.data_dir)  # before expansion: run_keys name it
    fell_back = fallback.announce(subs)
    numbered = opts.mine(expand(suite))
    cells = [c for _, c in numbered]
    base = RunOptions(device=opts.device, data_dir=opts.data_dir, cache_dir=opts.cache_dir)
    # Ray first: a store that the cluster cannot share is refused before anything is written
    with executors.create(opts.executor, suite.resources, opts.address, opts.device) as executor:
        preflight(cells, base)  # bad data or weights stop us before anything is logged
        exp_id = tracking.setup(suite.experiment_name)  # ... and an unusable store before training
        started_ms = int(time.time() * 1000)
        stale = claims.reap(exp_id)
        if stale:
            console.print(f"[yellow]{stale} run(s) left RUNNING by interrupted invocations were "
                          "marked KILLED; their cells will be retried")
        shard = "" if opts.shard[1] == 1 else f" (shard {opts.shard[0]}/{opts.shard[1]})"
        console.print(f"suite [bold]{esc(suite.name)}[/]{shard}: {len(cells)} cells, experiment "
                      f"'{esc(suite.experiment_name)}' at {esc(tracking.tracking_uri())}; "
                      f"{executor.describe()}")
        return _run(suite, opts, numbered, base, executor, (exp_id, started_ms, fell_back),
                    state)


def _run(suite: Suite, opts: SuiteOptions, numbered: list[tuple[int, Cell]], base: RunOptions,
         executor, invocation: tuple[str, int, dict], state: SuiteState) -> int:
    """The parent run: every cell through the executor, then the summary and the table."""
    exp_id, started_ms, fell_back = invocation
    cells = [c for _, c in numbered]
    params = {"suite": suite.name, "cells": len(cells), "device": opts.device,
              "force": opts.force, "shard": f"{opts.shard[0]}/{opts.shard[1]}",
              "executor": opts.executor, **fell_back}
    with tracking.parent_run(exp_id, suite.name, params, tags=claims.owner_tags()) as parent_id, \
            claims.held(parent_id), _progress() as progress:
        state.parent = parent_id
        if fell_back:
            tracking.set_tags(fell_back)
        cells_bar = progress.add_task("cells", total=len(cells), eta="")
        job = executors.Job(exp_id, parent_id, executors.portable_uri(), opts.force, started_ms,
                            os.getcwd())
        by_number, done = dict(numbered), {}
        for number, result in executor.run(numbered, job, base, (progress, cells_bar), state):
            done[number] = {"cell": number, **by_number[number].tags(), **result}
            state.rows = [done[n] for n in sorted(done)]
            progress.advance(cells_bar)
        rows = state.rows
        summary = pd.DataFrame(rows, columns=COLUMNS + (["axes"] if suite.axes else []))
        tracking.log_frame(summary, layout.CELLS_SUMMARY)
        failed = [r for r in rows if r["status"] == "FAILED"]
        tracking.log_metrics({"cells_failed": len(failed),
                              "cells_finished": sum(r["status"] == "FINISHED" for r in rows),
                              "cells_skipped": sum(r["status"] == "SKIPPED" for r in rows)})
    datasets = sorted({c.dataset.name for c in cells})
    shown = SHOWN if len(datasets) == 1 else SHOWN[:1] + ["dataset"] + SHOWN[1:]
    if all(c.fold is None for c in cells):  # narrower: no fold column of dashes
        shown = [c for c in shown if c != "fold"]
    if suite.axes:  # cells told apart by their axis values too
        shown = shown[:shown.index("seed")] + ["axes"] + shown[shown.index("seed"):]
    emit_table(rows, f"{suite.name} on {', '.join(datasets)}", opts.as_json, columns=shown,
               extra={"experiment": suite.experiment_name, "parent_run_id": parent_id,
                      "failed": len(failed)})
    if failed:
        console.print(f"[red]{len(failed)} cell(s) failed:[/] " + esc(
            "; ".join(f"{r['dataset']}/{r['model']}/{r['strategy']}/seed {r['seed']}: "
                      f"{r['error']}" for r in failed)))
        return 1
    return 0


def _say_stopped(suite: Suite, stop: stopping.Stopped, state: SuiteState) -> None:
    """What a signal left behind, and how to go on: the caller exits 128 + the signal."""
    done = sum(r["status"] == "FINISHED" for r in state.rows)
    if state.parent is None:
        kept = "nothing had started yet"
    else:
        kept = (f"{done} cell(s) finished by this invocation are kept in experiment "
                f"'{suite.experiment_name}' at {tracking.tracking_uri()}")
        if state.current:
            cell, run_id = state.current
            kept += f"; the interrupted cell {cell.title} (run {run_id}) was marked KILLED"
        if state.stopped_tasks:
            kept += (f"; {state.stopped_tasks} cell(s) running as Ray tasks were stopped and "
                     "marked KILLED")
        kept += f"; the suite run {state.parent} was marked KILLED"
    console.print(f"[yellow]stopped by {stop.name}:[/] " + esc(
        f"{kept}. To resume, run the same command again: finished cells are skipped and the "
        f"rest run (`{resume_command(suite.name)}`)."), soft_wrap=True)


def resume_command(suite_name: str) -> str:
    """The command line that was run, for the user to repeat (run/resume_hint.py)."""
    from mribench.run.resume_hint import resume_command as typed

    return typed(suite_name)


def preflight(cells: list[Cell], opts: RunOptions) -> None:
    """Scan and validate every dataset and find every pretrained weight file before anything is
    trained or logged, so a bad file, a missing folder or missing weights stop the suite with a
    clear error instead of failing cell after cell (run/needs.py). It also fills the decoded-image cache that
    the cells then read (and downloads hub weights once, for users with a network)."""
    from mribench.models.archs import check_patch_multiple

    for name, size in sorted({(c.model.name, c.preprocess.image_size) for c in cells}):
        check_patch_multiple(registry.get(name), size)
    # data and weights together: a user missing both learns about both from one message;
    # weights not on disk are downloaded here when the machine has a network
    needs.check(cells, opts.data_dir)
    check_explain_layers(cells)
    seen = set()
    for cell in cells:
        if (cell.dataset, cell.split, cell.preprocess) not in seen:
            seen.add((cell.dataset, cell.split, cell.preprocess))
            console.print(f"checking dataset {esc(cell.dataset.name)} ...")
            prepare_once(cell, opts)
            for ext in cell.dataset.external:
                console.print(f"checking external set {ext.name} for {cell.dataset.name} ...")
            prepare_externals(cell, opts)


def check_explain_layers(cells: list[Cell]) -> None:
    """Every explanation layer a suite names exists in its model (built without weights)."""
    from mribench.models.build import build

    checked = set()
    for cell in cells:
        specs = {cell.explain.layercam_layer if m == "layercam" else cell.explain.gradcam_layer
                 for m in cell.explain.methods if m != "lime"} - {"default"}
        key = (cell.model.name, cell.model.head, cell.preprocess.channels,
               cell.preprocess.image_size, tuple(sorted(specs)))
        if not specs or key in checked:
            continue
        checked.add(key)
        built = build(cell.model, cell.strategy, num_classes=2, in_chans=cell.preprocess.channels,
                      image_size=cell.preprocess.image_size, load_weights=False)
        for spec in sorted(specs):
            try:
                built.explain_layer(spec)
            except ValueError as err:
                raise UserError(f"model {cell.model.display!r}: {err}") from None


def _progress() -> Progress:
    # eta: the remaining time of the epoch / cell / suite (run/eta.py), set by the executor
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=console,
                    transient=False)
