"""`mribench tune`: Optuna search over the learning rates of one (dataset, model, strategy).

Each trial runs the real cell (`run_cell`) with the suggested rates as a nested MLflow run under
a tuning parent run, and is scored on the best validation loss only: trials never touch the
test split. Hopeless trials are pruned from their per-epoch validation loss. The study lives in
an Optuna RDB storage (SQLite by default), so an interrupted search resumes where it stopped,
and several processes can share one study.
"""
from __future__ import annotations

from dataclasses import replace

import optuna
import yaml

from mribench import tracking
from mribench.cell import RunOptions, run_cell
from mribench.config import ExplainConfig, Suite
from mribench.console import console, emit_table
from mribench.data import fallback
from mribench.matrix import Cell, expand
from mribench.suite import SuiteOptions, preflight

DEFAULT_STORAGE = "sqlite:///optuna.db"


def base_cell(suite: Suite, model: str, strategy: str, dataset: str | None) -> Cell:
    """The suite's first cell (first seed and fold) for this model, strategy and dataset."""
    for cell in expand(suite):
        if (model in (cell.model.name, cell.model.display)
                and strategy in (cell.strategy.name, cell.strategy.display)
                and dataset in (None, cell.dataset.name)):
            return cell
    combos = sorted({(c.dataset.name, c.model.display, c.strategy.display) for c in expand(suite)})
    raise ValueError(f"suite {suite.name!r} has no cell for model {model!r}, strategy "
                     f"{strategy!r}, dataset {dataset or 'any'!r}; it has {combos}")


def trial_cell(cell: Cell, lr: float, backbone_lr: float | None) -> Cell:
    training = cell.training.model_copy(update={"lr": lr, "backbone_lr": backbone_lr})
    return replace(cell, training=training, explain=ExplainConfig())


def tune(suite: Suite, model: str, strategy: str, dataset: str | None, trials: int,
         opts: SuiteOptions, storage: str | None = None,
         lr_range: tuple[float, float] = (1e-5, 1e-2)) -> int:
    suite, subs = fallback.resolve(suite, opts.data_dir)
    fell_back = fallback.announce(subs)
    cell = base_cell(suite, model, strategy, dataset)
    base = RunOptions(device=opts.device, data_dir=opts.data_dir, cache_dir=opts.cache_dir,
                      evaluate_test=False)
    preflight([cell], base)
    tunes_backbone = cell.strategy.name != "frozen"
    study = optuna.create_study(
        study_name=f"{suite.name}/{cell.dataset.name}/{cell.model.display}/"
                   f"{cell.strategy.display}/{cell.config_key}",
        storage=storage or DEFAULT_STORAGE, load_if_exists=True, direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cell.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    exp_id = tracking.setup(suite.experiment_name)
    title = f"tune {cell.model.display}/{cell.strategy.display}"

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *lr_range, log=True)
        backbone_lr = (trial.suggest_float("backbone_lr", lr_range[0] / 10, lr_range[1], log=True)
                       if tunes_backbone else None)
        candidate = trial_cell(cell, lr, backbone_lr)

        def report(row: dict, _epochs: int) -> None:
            trial.report(row["val_loss"], row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {row['epoch']}")

        tags = {k: v for k, v in candidate.tags().items() if k != "run_key"}  # not a suite cell
        with tracking.cell_run(f"{title} trial {trial.number}",
                               {**tags, "trial": str(trial.number)}, role="trial",
                               stopped=(optuna.TrialPruned,)):
            headline = run_cell(candidate, replace(base, on_epoch=report))
        trial.set_user_attr("val_acc_best", headline["val_acc_best"])
        return headline["val_loss_best"]

    params = {"trials": trials, "storage": storage or DEFAULT_STORAGE, "study": study.study_name,
              **fell_back}
    with tracking.parent_run(exp_id, suite.name, params, role="tune", run_name=title):
        console.print(f"{title}: {trials} trial(s), study '{study.study_name}' "
                      f"({len(study.trials)} earlier trial(s) resumed)")
        study.optimize(objective, n_trials=trials, catch=(RuntimeError,))
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
        console.print("put the best rates into the suite as a per-model override:\n" + snippet)
    return 0 if best else 1


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
