"""Compare a suite's finished cells from MLflow: mean and 95% CI over seeds and folds.

Cells are grouped by configuration (run_key without seed and fold), so runs of an older version
of the suite never blend into the current one's numbers.
"""
from __future__ import annotations

import re

import pandas as pd

from mribench import stats, tracking
from mribench.compare import paired_rows
from mribench.config import load_suite
from mribench.config_published import deviation_rows, flag_rows, value_flags
from mribench.console import console, emit_table
from mribench.data import fallback
from mribench.matrix import expand

GROUP = ["dataset", "model", "strategy"]
METRICS = ["test_accuracy", "test_balanced_accuracy", "test_f1_macro", "test_kappa",
           "test_clean_accuracy", "test_best_epoch_accuracy_peeking", "test_last_epoch_accuracy",
           "seconds_per_epoch"]
SHOWN = ["test_accuracy", "test_clean_accuracy", "test_f1_macro", "test_kappa",
         "seconds_per_epoch"]
# external test sets (external.py): accuracy on the whole set and on its clean part, and how
# many of its images duplicate a training or validation image
EXTERNAL = re.compile(r"^external_(clean_)?[A-Za-z0-9_.-]+?_(accuracy|n|n_exact_duplicates|"
                      r"n_near_duplicates)$")


def external_metrics(runs: pd.DataFrame) -> list[str]:
    """The external-set metrics present in the runs, grouped per set (full, then clean)."""
    names = [c[len("metrics."):] for c in runs.columns if c.startswith("metrics.")]
    found = [n for n in names if EXTERNAL.match(n) and not runs[f"metrics.{n}"].isna().all()]
    return sorted(found, key=lambda n: (n.replace("external_clean_", "external_"), n))


def summary_rows(runs: pd.DataFrame) -> list[dict]:
    """One row per configuration: n runs and the mean [95% CI] of each headline metric."""
    runs = runs[runs["status"] == "FINISHED"]
    rows = []
    keys = [f"tags.{g}" for g in GROUP] + ["tags.config_key"]
    for key, group in runs.groupby(keys, sort=True):
        row = dict(zip(GROUP + ["config_key"], key)) | {"n": len(group)}
        for metric in METRICS + external_metrics(runs):
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
    shown = [m for m in SHOWN + external_metrics(runs) if any(m in r for r in rows)] + published
    datasets = sorted({r["dataset"] for r in rows})
    cols = (["dataset"] if len(datasets) > 1 else []) + ["model", "strategy", "n"] + shown
    extra = {"experiment": name, "runs": int(len(runs))}
    if as_json:
        extra |= {"deviations": deviation_rows(suite.deviations),
                  "published_flags": flag_rows(suite.published)}
    pairs = paired_rows(runs, tracking.load_predictions) if compare else []
    if compare and as_json:
        extra["comparisons"] = pairs
    emit_table(rows, f"{name} ({', '.join(datasets)}): mean over seeds/folds, 95% CI in --json",
               as_json, columns=cols, extra=extra)
    if not as_json:
        print_paper_notes(suite)
    if compare and not as_json:
        emit_table(pairs, "paired McNemar tests over shared seeds/folds (Holm-adjusted)", False,
                   columns=["a", "b", "repeats", "images", "accuracy_a", "accuracy_b",
                            "p_value", "p_holm"] + (["error"] if any("error" in p for p in pairs)
                                                    else []))
    return 0


def print_paper_notes(suite) -> None:
    """Beside the published figures: the suite's deviations from the paper and the published
    values that cannot be compared (impossible or inconsistent), each with its reason."""
    if suite.deviations:
        emit_table(deviation_rows(suite.deviations),
                   f"{suite.name}: deviations from the paper", False,
                   columns=["topic", "paper", "ours", "why"])
    flags = flag_rows(suite.published)
    if flags:
        emit_table(flags, f"{suite.name}: published values flagged (not compared)", False,
                   columns=["model", "strategy", "metric", "value", "flag", "why"])


def _with_published(rows: list[dict], suite) -> list[str]:
    """Add the suite's published numbers as published_<metric> beside our means; returns the
    added column names. Flagged values (impossible or inconsistent) are left out: the report
    lists them apart, with the reason."""
    added: list[str] = []
    for p in suite.published:
        flagged = {f["metric"] for f in value_flags(p)}
        for row in rows:
            if p.model in _names(suite.models, row["model"]) and \
                    p.strategy in _names(suite.strategies, row["strategy"]):
                for metric, value in p.values.items():
                    if metric in flagged:
                        continue
                    row[f"published_{metric}"] = value
                    added += [] if f"published_{metric}" in added else [f"published_{metric}"]
    return added


def _names(items, display: str) -> set[str]:
    """Label and name of the suite entry shown as `display` (tags hold the display name)."""
    return {n for i in items if i.display == display for n in (i.display, i.name)}
