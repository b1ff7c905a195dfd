"""Compare a suite's finished cells from MLflow: mean and 95% CI over seeds and folds."""
from __future__ import annotations

import pandas as pd

from benchmark import stats, tracking
from benchmark.config import load_suite
from benchmark.console import console, emit_table

GROUP = ["dataset", "model", "strategy"]
METRICS = ["test_accuracy", "test_balanced_accuracy", "test_f1_macro", "test_kappa",
           "test_clean_accuracy", "seconds_per_epoch"]


def summary_rows(runs: pd.DataFrame) -> list[dict]:
    """One row per (dataset, model, strategy): n runs and mean [ci95] of each headline metric."""
    runs = runs[runs["status"] == "FINISHED"]
    rows = []
    for key, group in runs.groupby([f"tags.{g}" for g in GROUP], sort=True):
        row = dict(zip(GROUP, key)) | {"n": len(group)}
        for metric in METRICS:
            col = f"metrics.{metric}"
            if col not in group or group[col].isna().all():
                continue
            s = stats.summarize(group[col].dropna().tolist())
            row[metric] = round(s["mean"], 4)
            row[f"{metric}_ci95"] = [round(s["ci95_low"], 4), round(s["ci95_high"], 4)]
        rows.append(row)
    return rows


def report(suite_name: str, experiment: str | None, as_json: bool) -> int:
    name = experiment or load_suite(suite_name).experiment_name
    exp_id = tracking.experiment_id_of(name)
    if exp_id is None:
        console.print(f"[red]no experiment named {name!r} at {tracking.tracking_uri()}; "
                      f"run the suite first")
        return 2
    runs = tracking.search_cells(exp_id)
    if runs.empty:
        console.print(f"[red]experiment {name!r} has no cell runs yet")
        return 2
    rows = summary_rows(runs)
    cols = GROUP + ["n"] + [m for m in METRICS if any(m in r for r in rows)]
    emit_table(rows, f"{name}: mean over seeds/folds (95% CI in --json)", as_json, columns=cols,
               extra={"experiment": name, "runs": int(len(runs))})
    return 0
