"""`mribench tune`: Optuna search over the learning rates of one (dataset, model, strategy).

Each trial runs the real cell (`run_cell`) with the suggested rates as a nested MLflow run under
a tuning parent run, and is scored on the best validation loss only: trials never touch the
test split. Hopeless trials are pruned from their per-epoch validation loss. The study lives in
an Optuna RDB storage (SQLite by default), so an interrupted search resumes where it stopped,
and several processes can share one study.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import warnings
from dataclasses import replace

import optuna
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from mribench import redact, tracking
from mribench.config.schema import ExplainConfig, Suite
from mribench.console import console, emit_table, esc
from mribench.data import fallback
from mribench.errors import UserError
from mribench.matrix import Cell, expand
from mribench.models import strategies
from mribench.run import claims, stopping
from mribench.run.cell import RunOptions, run_cell
from mribench.run.suite import SuiteOptions, preflight
from mribench.tracking import locks
from mribench.train import threads

DEFAULT_STORAGE = "sqlite:///optuna.db"
HEARTBEAT_S = 20  # a live trial's process records a heartbeat this often ...
GRACE_S = 120  # ... and one silent for this long is failed and retried (another machine's)
MAX_RETRY = 2  # times a trial of a dead process is queued again
MAX_FAILURES_IN_A_ROW = 3  # failed trials do not count towards --trials: stop a hopeless loop


def base_cell(suite: Suite, model: str, strategy: str, dataset: str | None) -> Cell:
    """The suite's first cell (first seed and fold) for this model, strategy and dataset."""
    for cell in expand(suite):
        if (model in (cell.model.name, cell.model.display)
                and strategy in (cell.strategy.name, cell.strategy.display)
                and dataset in (None, cell.dataset.name)):
            return cell
    combos = sorted({(c.dataset.name, c.model.display, c.strategy.display) for c in expand(suite)})
    raise UserError(f"suite {suite.name!r} has no cell for model {model!r}, strategy "
                     f"{strategy!r}, dataset {dataset or 'any'!r}; it has {combos}")


def trial_cell(cell: Cell, lr: float, backbone_lr: float | None) -> Cell:
    training = cell.training.model_copy(update={"lr": lr, "backbone_lr": backbone_lr})
    return replace(cell, training=training, explain=ExplainConfig())


def tune(suite: Suite, model: str, strategy: str, dataset: str | None, trials: int,
         opts: SuiteOptions, storage: str | None = None,
         lr_range: tuple[float, float] = (1e-5, 1e-2)) -> int:
    """Run trials until the study holds `trials` finished (complete or pruned) trials in total;
    returns the exit code (128 + N after signal N)."""
    url = storage or DEFAULT_STORAGE
    quiet = _QuietStops()  # Optuna logs a stopped trial with a traceback; the stop is one line
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(quiet)
    try:
        with stopping.on_signals():
            return _tune(suite, model, strategy, dataset, trials, opts, url, lr_range)
    except stopping.Stopped as stop:
        console.print(f"[yellow]stopped by {stop.name}:[/] " + esc(
            f"finished trials are kept in the Optuna study at {redact.mask(url)}; the "
            "interrupted trial and the tuning run were marked KILLED. To resume, run the same "
            "command again: --trials counts the study's finished trials, so only the rest run."),
            soft_wrap=True)
        return stop.exit_code
    finally:
        optuna_log.removeFilter(quiet)


class _QuietStops(logging.Filter):
    """Drop Optuna's two warnings about a trial a signal ended ("failed ... because of the
    following error: Stopped" with its traceback, then "failed with value None"): the command
    says what happened in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        trial = text.split(" failed", 1)[0]
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.stopped.add(trial)
            return False
        return not (trial in self.stopped and "failed with value" in text)


def _tune(suite: Suite, model: str, strategy: str, dataset: str | None, trials: int,
          opts: SuiteOptions, url: str, lr_range: tuple[float, float]) -> int:
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    suite, subs = fallback.substitute(suite, opts.data_dir)
    fell_back = fallback.announce(subs)
    cell = base_cell(suite, model, strategy, dataset)
    base = RunOptions(device=opts.device, data_dir=opts.data_dir, cache_dir=opts.cache_dir,
                      evaluate_test=False)
    preflight([cell], base)
    exp_id = tracking.setup(suite.experiment_name)
    row = strategies.spec_of(cell.strategy)
    if not row.trains:
        raise UserError(f"strategy {row.name} trains nothing: it has no learning rate to tune")
    tunes_backbone = not row.backbone_frozen  # a frozen backbone has no rate of its own
    study = open_study(f"{suite.name}/{cell.dataset.name}/{cell.model.display}/"
                       f"{cell.strategy.display}/{cell.config_key}", url)
    title = f"tune {cell.model.display}/{cell.strategy.display}"
    closed = claims.reap(exp_id)
    if closed:
        console.print(f"[yellow]{closed} run(s) left RUNNING by interrupted invocations were "
                      "marked KILLED")
    gate: dict = {}

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        _release(gate)  # the trial is visibly ours: others may count it and ask for theirs
        lr = trial.suggest_float("lr", *lr_range, log=True)
        backbone_lr = (trial.suggest_float("backbone_lr", lr_range[0] / 10, lr_range[1], log=True)
                       if tunes_backbone else None)
        candidate = trial_cell(cell, lr, backbone_lr)

        def report(row: dict, _epochs: int) -> None:
            trial.report(row["val_loss"], row["epoch"])
            if trial.should_prune():
                gate["ok"] = True
                raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")

        tags = {k: v for k, v in candidate.tags().items() if k != "run_key"}  # not a suite cell
        tags |= {"trial": str(trial.number), "optuna_study": study.study_name,
                 **claims.owner_tags()}
        with tracking.cell_run(f"{title} trial {trial.number}", tags, role="trial",
                               stopped=(optuna.TrialPruned,)) as run_id, claims.held(run_id):
            # parallel trials (tune processes side by side) share the machine: threads.py
            threads.apply_and_log()
            headline = run_cell(candidate, replace(base, on_epoch=report))
        trial.set_user_attr("val_acc_best", headline["val_acc_best"])
        gate["ok"] = True
        return headline["val_loss_best"]

    params = {"trials": trials, "storage": url, "study": study.study_name, **fell_back}
    with tracking.parent_run(exp_id, suite.name, params, role="tune", run_name=title,
                             tags=claims.owner_tags()) as parent_id, claims.held(parent_id):
        finished = len(study.get_trials(deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.PRUNED)))
        console.print(esc(f"{title}: study '{study.study_name}' has {finished} finished "
                          f"trial(s); --trials {trials} asks for {trials} in total"))
        _run_trials(study, objective, trials, url, gate)
        best = _best(study)
        if best:
            tracking.log_params({f"best_{k}": v for k, v in best["params"].items()})
            tracking.log_metrics({"best_val_loss": best["val_loss"]})
    rows = [{"trial": t.number, "state": t.state.name, **t.params,
             "val_loss": t.value, "val_acc": t.user_attrs.get("val_acc_best")}
            for t in study.trials]
    snippet = _snippet(cell, best)
    emit_table(rows, f"{study.study_name}: {len(rows)} trials", opts.as_json,
               columns=["trial", "state", "lr", "backbone_lr", "val_loss", "val_acc"],
               extra={"best": best, "suite_override": snippet} if opts.as_json else None)
    if not opts.as_json and best:
        console.print("put the best rates into the suite as a per-model override:\n"
                      + esc(snippet))
    return 0 if best else 1


def _run_trials(study: optuna.Study, objective, trials: int, url: str, gate: dict) -> None:
    """One trial at a time until the study holds `trials` finished or running trials. Counting
    and asking for the next trial happen under the storage's lock (released by the objective
    once its trial carries its owner), so processes on one machine never overshoot."""
    lock, failures = locks.store_lock(url), 0
    while failures < MAX_FAILURES_IN_A_ROW:
        lock.acquire()
        gate["locked"], gate["ok"] = lock, False
        try:
            fail_dead_trials(study)
            if _counted(study) >= trials:
                return
            study.optimize(objective, n_trials=1, catch=(RuntimeError,))
        finally:
            _release(gate)
        failures = 0 if gate["ok"] else failures + 1
    console.print(f"[red]{MAX_FAILURES_IN_A_ROW} trials in a row failed; stopping[/] (see the "
                  "trial runs' error tags)")


def _release(gate: dict) -> None:
    lock = gate.pop("locked", None)
    if lock is not None:
        lock.release()


def _counted(study: optuna.Study) -> int:
    """Trials that count towards --trials: finished (complete, pruned) and running ones."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                         TrialState.RUNNING)))


def open_study(name: str, url: str) -> optuna.Study:
    """The study in an RDB storage with heartbeats: a trial whose process stops beating for
    GRACE_S is failed and queued again (RetryHeartbeatStaleTrialCallback)."""
    redact.install_log_filter()  # Optuna's handler exists once optuna is imported
    try:
        with locks.held(url), warnings.catch_warnings():  # fresh SQLite: creation must not race
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY))
            return optuna.create_study(
                study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                sampler=TrialSeededTPE(),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    except (locks.LockTimeout, optuna.exceptions.StorageInternalError, SQLAlchemyError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(f"Optuna storage {redact.mask(url)} cannot be used: "
                         f"{redact.mask(first)}; pass --storage with a reachable, writable "
                         "database URL (default sqlite:///optuna.db)") from None


def fail_dead_trials(study: optuna.Study) -> None:
    """RUNNING trials of a process that died on this machine fail now (heartbeats would take
    GRACE_S) and are queued again by the storage's retry callback; their MLflow runs are closed
    by `claims.reap`."""
    storage = study._storage  # as optuna.storages.fail_stale_trials reaches it
    retry = storage.get_heartbeat_stale_trial_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = {"host": str(t.user_attrs.get("host", "")), "pid": str(t.user_attrs.get("pid", ""))}
        if owner["host"] != socket.gethostname() or claims.owner_alive(owner):
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL) and retry:
                retry(study, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process failed it first


class TrialSeededTPE(optuna.samplers.BaseSampler):
    """TPE whose random draws are seeded from the study name and the trial number.

    `TPESampler(seed=cell.seed)` gave every process the same sequence: a resumed study proposed
    its first trials again, and two processes sharing a study ran identical pairs. Seeding each
    trial from (study, trial number) makes every trial draw differently, in any process, while
    one process alone stays reproducible."""

    def __init__(self) -> None:
        self._current: tuple[tuple[str, int], optuna.samplers.TPESampler] | None = None

    def _tpe(self, study: optuna.Study, trial) -> optuna.samplers.TPESampler:
        key = (study.study_name, trial.number)
        if self._current is None or self._current[0] != key:
            digest = hashlib.sha256(f"{key[0]}\0{key[1]}".encode()).digest()
            self._current = (key, optuna.samplers.TPESampler(
                seed=int.from_bytes(digest[:4], "big")))
        return self._current[1]

    def infer_relative_search_space(self, study, trial):
        return self._tpe(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe(study, trial).sample_independent(study, trial, param_name,
                                                          param_distribution)

    def before_trial(self, study, trial) -> None:
        self._tpe(study, trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe(study, trial).after_trial(study, trial, state, values)


def _best(study: optuna.Study) -> dict | None:
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return None
    t = study.best_trial
    return {"trial": t.number, "params": t.params, "val_loss": t.value,
            "val_acc": t.user_attrs.get("val_acc_best")}


def _snippet(cell: Cell, best: dict | None) -> str:
    if not best:
        return ""
    entry = {"name": cell.model.name, "training": {k: float(f"{v:.3g}")
                                                   for k, v in best["params"].items()}}
    return yaml.safe_dump({"models": [entry]}, sort_keys=False)
