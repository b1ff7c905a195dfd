"""Compare a suite's finished cells from MLflow: mean and 95% CI over seeds and folds.

Cells are grouped by configuration (run_key without seed and fold), so runs of an older version
of the suite never blend into the current one's numbers.
"""
from __future__ import annotations

import pandas as pd

from mribench import stats, tracking
from mribench.compare import paired_rows
from mribench.config import load_suite
from mribench.console import console, emit_table
from mribench.data import fallback
from mribench.matrix import expand

GROUP = ["dataset", "model", "strategy"]
METRICS = ["test_accuracy", "test_balanced_accuracy", "test_f1_macro", "test_kappa",
           "test_clean_accuracy", "test_best_epoch_accuracy_peeking", "seconds_per_epoch"]
SHOWN = ["test_accuracy", "test_clean_accuracy", "test_f1_macro", "test_kappa",
         "seconds_per_epoch"]


def summary_rows(runs: pd.DataFrame) -> list[dict]:
    """One row per configuration: n runs and the mean [95% CI] of each headline metric."""
    runs = runs[runs["status"] == "FINISHED"]
    rows = []
    keys = [f"tags.{g}" for g in GROUP] + ["tags.config_key"]
    for key, group in runs.groupby(keys, sort=True):
        row = dict(zip(GROUP + ["config_key"], key)) | {"n": len(group)}
        for metric in METRICS:
            col = f"metrics.{metric}"
            if col not in group or group[col].isna().all():
                continue
            s = stats.summarize(group[col].dropna().tolist())
            row[metric] = round(s["mean"], 4)
            row[f"{metric}_ci95"] = [round(s["ci95_low"], 4), round(s["ci95_high"], 4)]
        rows.append(row)
    return rows


def report(suite_name: str, experiment: str | None, as_json: bool,
           include_all: bool = False, compare: bool = False) -> int:
    suite = load_suite(suite_name)
    name = experiment or suite.experiment_name
    exp_id = tracking.experiment_id_of(name)
    if exp_id is None:
        console.print(f"[red]no experiment named {name!r} at {tracking.tracking_uri()}; "
                      f"run the suite first")
        return 2
    runs = tracking.search_cells(exp_id)
    # a fallback (the smoke suite's embedded sample) makes its cells current too
    current = {c.run_key: c.config_key for version in fallback.alternatives(suite)
               for c in expand(version)}
    if not include_all and not runs.empty:
        runs = runs[runs["tags.run_key"].isin(current)]
    if not runs.empty:  # a --force rerun repeats a cell: its newest finished run counts, once
        runs = (runs[runs["status"] == "FINISHED"].sort_values("start_time", ascending=False)
                .drop_duplicates("tags.run_key"))
    if runs.empty:
        console.print(f"[red]experiment {name!r} has no cell runs of suite {suite.name!r} "
                      "as it is now (--all includes older versions)")
        return 2
    # the suite itself knows which runs repeat one configuration; runs of older versions (--all)
    # use their config_key tag, or stand alone when they predate it
    tagged = runs.get("tags.config_key", runs["tags.run_key"]).fillna(runs["tags.run_key"])
    runs = runs.assign(**{"tags.config_key": runs["tags.run_key"].map(current).fillna(tagged)})
    rows = summary_rows(runs)
    published = _with_published(rows, suite)
    shown = [m for m in SHOWN if any(m in r for r in rows)] + published
    datasets = sorted({r["dataset"] for r in rows})
    cols = (["dataset"] if len(datasets) > 1 else []) + ["model", "strategy", "n"] + shown
    extra = {"experiment": name, "runs": int(len(runs))}
    pairs = paired_rows(runs, tracking.load_predictions) if compare else []
    if compare and as_json:
        extra["comparisons"] = pairs
    emit_table(rows, f"{name} ({', '.join(datasets)}): mean over seeds/folds, 95% CI in --json",
               as_json, columns=cols, extra=extra)
    if compare and not as_json:
        emit_table(pairs, "paired McNemar tests over shared seeds/folds (Holm-adjusted)", False,
                   columns=["a", "b", "repeats", "images", "accuracy_a", "accuracy_b",
                            "p_value", "p_holm"] + (["error"] if any("error" in p for p in pairs)
                                                    else []))
    return 0


def _with_published(rows: list[dict], suite) -> list[str]:
    """Add the suite's published numbers as published_<metric> beside our means; returns the
    added column names."""
    added: list[str] = []
    for p in suite.published:
        for row in rows:
            if p.model in _names(suite.models, row["model"]) and \
                    p.strategy in _names(suite.strategies, row["strategy"]):
                for metric, value in p.values.items():
                    row[f"published_{metric}"] = value
                    added += [] if f"published_{metric}" in added else [f"published_{metric}"]
    return added


def _names(items, display: str) -> set[str]:
    """Label and name of the suite entry shown as `display` (tags hold the display name)."""
    return {n for i in items if i.display == display for n in (i.display, i.name)}
