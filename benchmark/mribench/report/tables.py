"""The report's tables, computed from a suite's finished cell runs and their predictions.

Everything here is data (lists of dicts, DataFrames); figures.py draws it, html.py lays it out,
summary.py prints the console version. The clean test subset (no exact or near copy of the
image in train/val) leads; the full test set follows.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mribench import stats
from mribench.report.composition import display_columns, subset_summary
from mribench.run import layout
from mribench.stats.compare import correctness, group_vector, label_of, seed_matrix

SUBSETS = layout.PREFIXES  # subset -> metric prefix as logged
SCORES = ["balanced_accuracy", "f1_macro", "kappa", "mcc", "ece"]


@dataclass
class Results:
    """A suite's current cell runs (newest finished run per cell) and their predictions."""
    experiment: str
    runs: pd.DataFrame
    predictions: dict[str, pd.DataFrame | None] = field(default_factory=dict)

    def load(self, run_id: str) -> pd.DataFrame | None:
        return self.predictions.get(run_id)

    def configs(self):
        """(dataset, config label, runs of the configuration), in a stable order; labels name
        the dataset too when the suite has several, so every label is unique."""
        several = self.runs["dataset"].nunique() > 1
        for dataset, on_dataset in self.runs.groupby("dataset", sort=True):
            label = label_of(on_dataset)
            groups = [((f"{dataset}: " if several else "") + label(g.iloc[0]), g)
                      for _, g in on_dataset.groupby("config_key")]
            # numbers in labels in numeric order: `[train_per_class=25]` before `=100`
            for name, group in sorted(groups, key=lambda item: natural_key(item[0])):
                yield dataset, name, group.sort_values(["seed", "fold"])


def natural_key(label: str) -> list:
    """Sort key that orders the numbers inside labels by value (train_per_class=10 < =50 < =200)."""
    return [(0, float(part), "") if re.fullmatch(r"\d+(\.\d+)?", part) else (1, 0.0, part)
            for part in re.split(r"(\d+(?:\.\d+)?)", label)]


def _metric(runs: pd.DataFrame, name: str) -> list[float]:
    col = name
    return [] if col not in runs else pd.to_numeric(runs[col], errors="coerce").dropna().tolist()


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _accuracy(results: Results, runs: pd.DataFrame, subset: str) -> dict:
    """Mean accuracy with the two-level bootstrap interval (images and seeds) when predictions
    exist, and the seed-only Student-t interval over the runs' logged accuracies."""
    prefix = SUBSETS[subset]
    logged = _metric(runs, f"{prefix}_accuracy")
    if not logged:
        return {}
    out: dict = {f"{prefix}_accuracy": _mean(logged)}
    seed = stats.summarize(logged)
    out[f"{prefix}_accuracy_seed_ci95"] = [seed["ci95_low"], seed["ci95_high"]]
    parts = []
    for _, run in runs.iterrows():
        frame = correctness(results.load(run["run_id"]), subset)
        if frame is None:
            return out  # a run without predictions: only the seed spread can be given
        parts.append((run["seed"], frame.assign(value=frame["correct"])))
    table = seed_matrix(parts)
    if table.size == 0:  # no image in the subset (every test image leaked)
        return out
    # copies of one test image are resampled together (a cluster bootstrap)
    boot = stats.two_level_bootstrap(table.to_numpy(), groups=group_vector(parts, table.columns))
    out.update({f"{prefix}_accuracy": boot["mean"],
                f"{prefix}_accuracy_ci95": [boot["ci95_low"], boot["ci95_high"]],
                f"{prefix}_images": boot["images"], f"{prefix}_groups": boot["groups"]})
    return out


def configuration_rows(results: Results, published: dict[tuple[str, str], dict]) -> list[dict]:
    """One row per configuration: accuracies with intervals, scores, cost, size, published."""
    rows = []
    for dataset, name, runs in results.configs():
        first = runs.iloc[0]
        row = {"dataset": dataset, "config": name, "model": first["model"],
               "strategy": first["strategy"], "n": len(runs),
               "seeds": int(runs["seed"].nunique()), "config_key": first["config_key"]}
        for subset, prefix in SUBSETS.items():
            # composition first: the bootstrap's image and group counts take precedence
            row |= subset_summary(runs, prefix, classes_of(runs))
            row |= _accuracy(results, runs, subset)
            for score in SCORES:
                value = _mean(_metric(runs, f"{prefix}_{score}"))
                if value is not None:
                    row[f"{prefix}_{score}"] = value
        if "test_clean_accuracy" in row and "test_accuracy" in row:
            row["leakage_gap"] = row["test_accuracy"] - row["test_clean_accuracy"]
        row["leaked_test_images"] = _mean(_metric(runs, "test_leaked_near"))
        row["seconds_per_epoch"] = _mean(_metric(runs, "seconds_per_epoch"))
        trainable = pd.to_numeric(runs.get("params_trainable"), errors="coerce")
        row["params_trainable"] = None if trainable is None or trainable.isna().all() \
            else int(trainable.dropna().iloc[0])
        for metric, value in published.get((row["model"], row["strategy"]), {}).items():
            row[f"published_{metric}"] = value
            ours = _metric(runs, metric)  # ours beside it, with the interval over the runs
            if ours:
                row[f"ours_{metric}"] = _mean(ours)
                spread = stats.summarize(ours)
                row[f"ours_{metric}_seed_ci95"] = [spread["ci95_low"], spread["ci95_high"]]
        for metric in external_metrics(results.runs):  # external test sets (external.py)
            row[metric] = _mean(_metric(runs, metric))
        for metric in (c for c in results.runs.columns
                       if c.startswith("external_") and "_support_" in c):
            row[metric] = _mean(_metric(runs, metric))  # images per class of each external set
        rows.append(row)
    return rows


# external test sets: accuracy on the whole set and on its clean part, and how many of its
# images duplicate a training or validation image
EXTERNAL = re.compile(r"^external_(clean_)?[A-Za-z0-9_.-]+?_(accuracy|balanced_accuracy|n|"
                      r"n_clean|n_exact_duplicates|n_near_duplicates|majority_baseline|"
                      r"chance_baseline)$")


def external_metrics(runs: pd.DataFrame) -> list[str]:
    """The external-set metrics present in the runs, grouped per set (full, then clean)."""
    found = [n for n in runs.columns if EXTERNAL.match(n) and not runs[n].isna().all()]
    return sorted(found, key=lambda n: (n.replace("external_clean_", "external_"), n))


def run_rows(results: Results) -> list[dict]:
    """One row per run: accuracy with its per-run Wilson interval (test images only)."""
    rows = []
    for dataset, name, runs in results.configs():
        for _, run in runs.iterrows():
            row = {"dataset": dataset, "config": name, "seed": run["seed"],
                   "fold": run["fold"], "run_id": run["run_id"]}
            for prefix in SUBSETS.values():
                for key in ("accuracy", "accuracy_wilson_low", "accuracy_wilson_high", "n",
                            "groups"):
                    value = run.get(f"{prefix}_{key}")
                    if value is not None and not (isinstance(value, float) and math.isnan(value)):
                        row[f"{prefix}_{key}"] = int(value) if key in ("n", "groups") \
                            else float(value)
            rows.append(row)
    return rows


def recall_table(results: Results, subset: str) -> pd.DataFrame:
    """Mean recall per configuration (rows) and true class (columns), from logged metrics. Each
    configuration has its own dataset's classes (a suite may mix 4-class and binary sets): the
    columns are their union in first-seen order, NaN where a class is not the dataset's."""
    from mribench.stats.metrics import safe_name

    prefix = SUBSETS[subset]
    table = {}
    for _, name, runs in results.configs():
        # a class with no image in the subset has no recall (older runs logged 0 for it)
        table[name] = {c: None if _mean(_metric(runs, f"{prefix}_support_{safe_name(c)}")) == 0
                       else _mean(_metric(runs, f"{prefix}_recall_{safe_name(c)}"))
                       for c in classes_of(runs)}
    return pd.DataFrame(table).T.astype(float)


def confusion_tables(results: Results, subset: str) -> dict[str, pd.DataFrame]:
    """Confusion counts per configuration (its own dataset's classes), pooled over its runs,
    from the predictions."""
    out = {}
    for _, name, runs in results.configs():
        classes = classes_of(runs)
        frames = [results.load(r) for r in runs["run_id"]]
        frames = [f for f in frames if f is not None]
        if subset == layout.CLEAN:
            frames = [layout.in_subset(f, subset) for f in frames if layout.has_clean_flags(f)]
        if not frames:
            continue
        both = pd.concat(frames)
        counts = pd.crosstab(pd.Categorical(both["true"], classes),
                             pd.Categorical(both["pred"], classes), dropna=False)
        counts.index.name, counts.columns.name = "true", "predicted"
        out[name] = counts
    return out


def classes_of(runs: pd.DataFrame) -> list[str]:
    """The class names, from the first of these runs that logged them."""
    import json

    for value in runs.get("classes", pd.Series(dtype=object)).dropna():
        try:
            return list(json.loads(value))
        except (TypeError, ValueError):
            continue
    return []


def display_rows(rows: list[dict]) -> list[dict]:
    """The configuration table as people read it: mean [95% interval], 3 decimals."""
    shown = []
    for row in rows:
        out = {"config": row["config"], "n": row["n"]}  # the label names the dataset if several
        for subset, prefix in SUBSETS.items():
            if f"{prefix}_accuracy" in row:
                out[f"{subset} acc [95% CI]"] = _with_interval(row, f"{prefix}_accuracy")
                out |= display_columns(row, prefix)
        # MRI artefacts (report/robustness.py): clean test first, as the accuracies
        mca = next((k for k in ("robust_clean_mca", "robust_mca") if row.get(k) is not None), None)
        if mca:
            out["clean mCA [95% CI]" if "clean" in mca else "mCA [95% CI]"] = _with_interval(row, mca)
        for key, title in (("leakage_gap", "gap"), ("test_clean_f1_macro", "F1 (clean)"),
                           ("test_clean_kappa", "kappa"), ("test_clean_mcc", "MCC"),
                           ("test_clean_ece", "ECE"), ("seconds_per_epoch", "s/epoch")):
            if row.get(key) is not None:
                out[title] = f"{row[key]:+.3f}" if key == "leakage_gap" else _num(row[key])
        if row.get("params_trainable") is not None:
            out["trainable"] = f"{row['params_trainable']:,}"
        for key in sorted(k for k in row if k.startswith("published_")):
            metric = key.removeprefix("published_")
            ours = (_with_interval(row, f"ours_{metric}", mark=False)
                    if row.get(f"ours_{metric}") is not None else "-")
            out[f"{metric} (ours / paper)"] = f"{ours} / {_num(row[key])}"
        if row.get("missing"):
            out["note"] = row["missing"]
        shown.append(out)  # external test sets have their own table (external_display_rows)
    return shown


def external_display_rows(rows: list[dict]) -> list[dict]:
    """One row per configuration and external test set: its size, how many of its images are
    (near) copies of a training/validation image and so left out of the clean part, and
    accuracy and balanced accuracy on the whole set and on the clean part."""
    shown = []
    for row in rows:
        sets = [k.removeprefix("external_").removesuffix("_n") for k in row
                if EXTERNAL.match(k) and k.endswith("_n") and not k.startswith("external_clean_")
                and row[k] is not None]
        for name in sets:
            def value(key, fmt=_num, row=row):
                return "-" if row.get(key) is None else fmt(row[key])
            total, clean = row.get(f"external_{name}_n"), row.get(f"external_{name}_n_clean")
            shown.append({
                "config": row["config"], "external set": name,
                "images": value(f"external_{name}_n", lambda v: f"{v:.0f}"),
                "exact/near copies of train/val": "-" if total is None or clean is None
                else f"{total - clean:.0f}",
                "clean images": value(f"external_{name}_n_clean", lambda v: f"{v:.0f}"),
                "acc (whole)": value(f"external_{name}_accuracy"),
                "acc (clean)": value(f"external_clean_{name}_accuracy"),
                "mix (clean)": _external_mix(row, f"external_clean_{name}"),
                "majority / chance (clean)": "-" if row.get(
                    f"external_clean_{name}_majority_baseline") is None else
                f"{row[f'external_clean_{name}_majority_baseline']:.3f} / "
                f"{row[f'external_clean_{name}_chance_baseline']:.3f}",
                "balanced acc (whole)": value(f"external_{name}_balanced_accuracy"),
                "balanced acc (clean)": value(f"external_clean_{name}_balanced_accuracy")})
    return shown


def _external_mix(row: dict, prefix: str) -> str:
    """`a 12, b 0, c 30`: images per class of an external set's part, from its support metrics."""
    counts = {k.removeprefix(f"{prefix}_support_"): v for k, v in row.items()
              if k.startswith(f"{prefix}_support_") and v is not None}
    return ", ".join(f"{c} {n:.0f}" for c, n in sorted(counts.items())) or "-"


def _with_interval(row: dict, key: str, mark: bool = True) -> str:
    """mean [interval], saying what the interval covers when it is not the two-level one."""
    low, high = row.get(f"{key}_ci95") or row.get(f"{key}_seed_ci95") or [math.nan, math.nan]
    note = "" if f"{key}_ci95" in row else " (seeds only)"
    if row.get("seeds") == 1 and f"{key}_ci95" in row:  # no second seed: no training noise in it
        note = " (test images only, 1 seed)"
    mark = note if mark else ""
    if math.isnan(low):
        return f"{row[key]:.3f}"
    return f"{row[key]:.3f} [{low:.3f}, {high:.3f}]{mark}"


def _num(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
