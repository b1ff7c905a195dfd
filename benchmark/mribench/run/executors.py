"""How a suite's pending cells get run, once the driver (suite.py) has checked the data, opened
the parent run and decided what is pending.

- local (default): one cell after another in this process, with epoch and batch bars.
- ray: every cell a Ray task asking for the suite's `resources`, on a local Ray instance (a
  laptop, a multi-GPU box) or a cluster (`--address`). Tasks log their nested runs straight to
  the driver's tracking store; the driver collects results as tasks complete.

Both train a cell through `run_claimed`, so a cell is trained only under its claim and never
when a FINISHED run exists (a retried task, a second driver, a rerun).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from mribench import environment, redact, tracking
from mribench.config.schema import ResourcesConfig
from mribench.console import console, esc
from mribench.errors import UserError
from mribench.matrix import Cell
from mribench.run import claims, stopping
from mribench.run.cell import RunOptions, run_cell
from mribench.run.eta import Eta
from mribench.train import threads
from mribench.train.engine import Diverged

Pending = list[tuple[int, Cell]]  # (1-based number in the suite, cell)


@dataclass(frozen=True)
class Job:
    """What a cell needs to know about the invocation that asked for it (sent to Ray tasks)."""
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    force: bool = False
    started_ms: int = 0  # with --force, FINISHED runs older than this are rerun
    cwd: str = ""  # the driver's working directory: relative suite paths resolve against it
    cpus: float | None = None  # the CPUs each cell was given (Ray's cpus_per_cell); None: alone
    threads: int | None = None  # the driver's --threads, which beats any share


@dataclass
class SuiteState:
    """What a running suite has done so far, for the messages after a signal or a store
    failure: the result rows, the cell training now (with its run id) and the parent run."""
    rows: list[dict] = field(default_factory=list)
    current: tuple[Cell, str] | None = None
    parent: str | None = None
    stopped_tasks: int = 0  # Ray tasks stopped by a signal, their runs closed KILLED


def run_claimed(cell: Cell, job: Job, opts: RunOptions, owner: dict[str, str] | None = None,
                on_claim: Callable[[Cell, str | None], None] | None = None) -> dict:
    """Claim the cell (see `claims`), then train it in its nested run under the driver's
    parent run; returns the result columns of the suite table. `owner` tags the run with the
    Ray task that trains it, so that a retry of the task takes over the run its dead attempt
    left RUNNING, on whichever machine that was (the pid check only works on one machine)."""
    start = time.perf_counter()
    if owner:  # Ray retries a task only when its worker died
        tracking.close_running(job.experiment_id, {"run_key": cell.run_key, **owner}, "KILLED",
                               "interrupted: its worker died and Ray retried the cell")
    taken = claims.claim(job.experiment_id, cell, parent_run_id=job.parent_run_id,
                         finished_since_ms=job.started_ms if job.force else 0, tags=owner)
    if taken.run_id is None:
        console.print(f"skip {esc(cell.title)}: {_why(taken)}")
        return {"status": "SKIPPED", "skip_reason": taken.reason, "run_id": taken.holder,
                "test_accuracy": taken.accuracy}
    try:
        if on_claim:
            on_claim(cell, taken.run_id)
        with claims.held(taken.run_id), tracking.cell_run(cell.title, cell.tags(),
                                                          run_id=taken.run_id):
            # torch's threads (and the loader's workers) from the cell's share (train/threads.py)
            threads.apply_and_log(job.cpus)
            headline = run_cell(cell, opts)
    except stopping.Stopped as stop:  # cell_run ended the run; if it had not started, this does
        claims.close_stopped(taken.run_id, stop)
        raise
    except Exception as err:  # one cell's failure must not stop the suite ...
        failed = tracking.store_failure(err)
        if failed:  # ... but a failing store stops it: every later cell would fail the same way
            raise tracking.StoreFailed(failed) from None
        where = f" on {socket.gethostname()}" if owner else ""
        error = redact.mask(f"{type(err).__name__}{where}: {err}")
        console.print(f"[red]cell {esc(cell.title)} failed:[/] {esc(error)}")
        if not isinstance(err, Diverged):  # an outcome of the configuration, not a bug
            console.print(redact.mask(traceback.format_exc()), markup=False, highlight=False)
        result = {"status": "FAILED", "error": error, "seconds": time.perf_counter() - start,
                  "run_id": taken.run_id}
    else:
        result = {"status": "FINISHED", "test_accuracy": headline.get("test_accuracy"),
                  "seconds": time.perf_counter() - start, "run_id": taken.run_id}
    if on_claim:
        on_claim(cell, None)
    return result


def _why(taken: claims.Claim) -> str:
    if taken.reason == "finished earlier":
        return f"finished run {taken.holder} exists (--force reruns it)"
    return f"another live invocation is running it (run {taken.holder})"


class LocalExecutor:
    """The cells one after another in this process."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe(self) -> str:
        return "one cell at a time in this process"

    def run(self, pending: Pending, job: Job, base: RunOptions, bars,
            state: SuiteState) -> Iterator[tuple[int, dict]]:
        """Yields (number, result columns) as cells finish; `bars` = (rich Progress, cells bar);
        state.current = (cell, run id) while a cell trains (for the message on a signal)."""
        progress, cells_bar = bars

        def on_claim(cell: Cell, run_id: str | None) -> None:
            state.current = (cell, run_id) if run_id else None
        epochs_bar = progress.add_task("epochs", total=None, visible=False, eta="")
        batches_bar = progress.add_task("batches", total=None, visible=False, eta="")
        eta = Eta(len(pending))
        for number, cell in pending:
            progress.update(cells_bar, description=esc(cell.title))
            progress.reset(epochs_bar, total=cell.training.epochs, visible=True,
                           description="epochs", eta="")
            eta.cell_started(cell.training.epochs)
            hooks = replace(base, on_epoch=_on_epoch(progress, epochs_bar, eta),
                            on_batch=_on_batch(progress, (cells_bar, epochs_bar, batches_bar),
                                               eta),
                            on_stage=lambda what: progress.update(epochs_bar, description=what))
            result = run_claimed(cell, job, hooks, on_claim=on_claim)
            eta.cell_finished(result.get("status") != "SKIPPED")
            progress.update(cells_bar, eta=Eta.say(eta.suite_left(), "suite"))
            yield number, result


def _on_epoch(progress, bar, eta: Eta):
    def hook(row: dict, epochs: int) -> None:
        eta.epoch_finished(row["epoch"], epochs)
        progress.update(bar, completed=row["epoch"], total=epochs, description="epochs",
                        eta=Eta.say(eta.cell_left(), "cell"))
    return hook


def _on_batch(progress, bars, eta: Eta):
    cells_bar, epochs_bar, batches_bar = bars

    def hook(done: int, total: int) -> None:
        eta.batch(done, total)
        progress.update(batches_bar, completed=done, total=total, visible=True,
                        eta=Eta.say(eta.epoch_left(), "pass"))
        progress.update(epochs_bar, eta=Eta.say(eta.cell_left(), "cell"))
        progress.update(cells_bar, eta=Eta.say(eta.suite_left(), "suite"))
    return hook


class RayExecutor:
    """Every cell a Ray task. Entering connects to the cluster at `address` (or starts a local
    Ray instance), sizes the tasks and refuses a store the cluster's other machines cannot
    reach; leaving disconnects (a local instance stops with it)."""

    def __init__(self, resources: ResourcesConfig, address: str | None, device: str):
        self.resources, self.address, self.device = resources, address, device
        self.gpus, self.nodes = 0.0, 0

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'brain-mri-benchmark[ray]' "
                             "(or pip install 'ray[default]')") from None
        # no address: Ray's own RAY_ADDRESS, else a fresh instance on this machine (never a
        # cluster that someone else happened to start here)
        address = self.address or os.environ.get("RAY_ADDRESS") or "local"
        uri = tracking.configured_store()
        if _file_store(uri) and address.startswith("ray://"):
            raise UserError(_shared_store_error(uri, "a Ray client address (ray://)"))
        ray.init(address=address, log_to_driver=True)
        try:
            self._size(ray, uri)
        except BaseException:
            ray.shutdown()
            raise
        return self

    def _size(self, ray, uri: str) -> None:
        nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
        self.nodes = len(nodes)
        if _file_store(uri) and len(nodes) > 1:
            raise UserError(_shared_store_error(uri, f"a Ray cluster of {len(nodes)} nodes"))
        gpus = self.resources.gpus_per_cell
        if gpus is None:  # one GPU per cell wherever the cluster has GPUs, unless told cpu
            gpus = 1.0 if self.device != "cpu" and any(n.get("GPU") for n in nodes) else 0.0
        if self.device.startswith("cuda") and not gpus:
            raise UserError(f"--device {self.device}: the Ray cluster has no GPUs "
                             "(or resources.gpus_per_cell is 0)")
        cpus = self.resources.cpus_per_cell
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            raise UserError(f"each cell asks for {cpus:g} CPU(s) and {gpus:g} GPU(s) (the "
                             "suite's resources:), more than any node of the Ray cluster has: "
                             + "; ".join(f"{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU"
                                         for n in nodes))
        self.gpus = gpus

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()

    def describe(self) -> str:
        return (f"Ray tasks on {self.nodes} node(s), {self.resources.cpus_per_cell:g} CPU and "
                f"{self.gpus:g} GPU per cell, up to {self.resources.max_retries} retries")

    def run(self, pending: Pending, job: Job, base: RunOptions, bars,
            state: SuiteState) -> Iterator[tuple[int, dict]]:
        """Yields (number, result columns) as tasks complete. If the driver is interrupted,
        its tasks are cancelled and their runs closed KILLED (state.stopped_tasks)."""
        import ray

        progress, cells_bar = bars
        progress.update(cells_bar, description=f"cells (Ray, {len(pending)} submitted)")

        task, device = ray.remote(_cell_task), "cuda" if self.gpus else "cpu"
        # each task's torch threads follow its CPUs (a Ray worker would otherwise take them all)
        job = replace(job, cpus=self.resources.cpus_per_cell,
                      threads=threads.requested() or environment.threads())
        refs = {task.options(name=f"cell {number}", num_cpus=self.resources.cpus_per_cell,
                             num_gpus=self.gpus, max_retries=self.resources.max_retries,
                             retry_exceptions=False
                             ).remote(cell, job, device, base.data_dir, base.cache_dir):
                (number, cell) for number, cell in pending}
        try:
            while refs:
                (ref,), _ = ray.wait(list(refs), num_returns=1)
                number, cell = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # its worker died more than retried
                    result = self._lost(cell, job, f"{job.parent_run_id}/{ref.task_id().hex()}",
                                        err)
                yield number, result
        finally:
            if refs:  # the driver was interrupted (a signal, Ctrl-C): stop its tasks' cells
                for ref in refs:
                    ray.cancel(ref, force=True)
                state.stopped_tasks = tracking.close_running(
                    job.experiment_id, {"mlflow.parentRunId": job.parent_run_id, "role": "cell"},
                    "KILLED", "stopped: the driver was interrupted")

    def _lost(self, cell: Cell, job: Job, task_id: str, err: Exception) -> dict:
        why = (f"{type(err).__name__}: Ray gave up after {self.resources.max_retries} "
               f"retries: {str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}")
        tracking.close_running(job.experiment_id, {"run_key": cell.run_key, "ray_task": task_id},
                               "FAILED", why)
        console.print(f"[red]cell {esc(cell.title)} lost:[/] {esc(why)}")
        return {"status": "FAILED", "error": why}


_PREPARED: dict = {}  # a worker process's prepared datasets, reused by its next cells


def _cell_task(cell: Cell, job: Job, device: str, data_dir: str | None,
               cache_dir: str | None) -> dict:
    """One cell inside a Ray worker."""
    import ray

    # a retry keeps its task id; task ids repeat across Ray instances, parent run ids do not
    owner = {"ray_task": f"{job.parent_run_id}/{ray.get_runtime_context().get_task_id()}"}
    return run_claimed(cell, job, worker_options(job, device, data_dir, cache_dir, _PREPARED),
                       owner)


def _file_store(uri: str) -> Path | None:
    """The local file behind a SQLite or file store URI (None for a server or a database)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):].split("?", 1)[0])
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    if ":" not in uri:  # a bare folder (./mlruns); `databricks` names a hosted service
        return None if uri.startswith("databricks") else Path(uri)
    return None


def portable_uri() -> str:
    """The current store as a Ray worker on this machine reaches it from any directory."""
    uri = tracking.store_uri()
    path = _file_store(uri)
    if path is None or path.is_absolute() or not uri.startswith("sqlite:///"):
        return uri
    return f"sqlite:///{path.resolve()}"


def _shared_store_error(uri: str, where: str) -> str:
    return (f"the tracking store {redact.mask(uri)} is a file on this machine, which {where} cannot share: "
            "start a tracking server (docker/compose.yaml) and point MLFLOW_TRACKING_URI at "
            "it, e.g. export MLFLOW_TRACKING_URI=http://HOST:5000")


def create(name: str, resources: ResourcesConfig, address: str | None, device: str):
    if name == "local":
        if address:
            raise UserError("--address is for --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(resources, address, device)
    raise UserError(f"--executor {name!r}: use local or ray")


def worker_options(job: Job, device: str, data_dir: str | None, cache_dir: str | None,
                   prepared: dict) -> RunOptions:
    """A Ray worker's view: the driver's store and working directory (when this machine has
    it, e.g. a shared file system), the device Ray gave it."""
    tracking.use_uri(job.tracking_uri)
    threads.request(job.threads)
    if job.cwd and Path(job.cwd).is_dir():
        os.chdir(job.cwd)
    return RunOptions(device=device, data_dir=data_dir, cache_dir=cache_dir, prepared=prepared)
