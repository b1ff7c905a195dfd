"""How to transfer, at what cost: clean-test accuracy against trainable parameters and against
training time, one point per configuration, the Pareto-optimal ones marked.

A configuration is on a frontier when no other configuration of the same group (the same
dataset, model-independent, at the same values of the suite's axes, e.g. one training size)
is at least as accurate at no more cost and strictly better in one of the two. Accuracy is the
configuration table's mean (clean test when there is one) with its two-level interval over test
images and seeds; cost is the logged `params_trainable` (what the optimizer updates: lora's
adapters, bitfit's biases, ... plus the head) and the mean `fit_seconds` (everything the
strategy does to fit: feature extraction, both lp_ft stages, a kNN index; CPU seconds of wall
time on the machine that ran it). The table adds optimizer-state size, peak RSS, seconds per
epoch and the logged model's size.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mribench.report.tables import natural_key  # noqa: E402

COSTS = {"params_trainable": "trainable parameters", "fit_seconds": "training seconds"}
EXTRA = {"optimizer_state_mb": "optimizer MiB", "peak_rss_mb": "peak RSS MiB",
         "seconds_per_epoch": "s/epoch", "model_size_mb": "model MiB"}


def _mean(runs: pd.DataFrame, metric: str) -> float | None:
    col = metric
    if col not in runs:
        return None
    values = pd.to_numeric(runs[col], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def frontier_rows(results, rows: list[dict]) -> list[dict]:
    """One row per configuration with accuracy, costs and its frontier flags."""
    by_name = {r["config"]: r for r in rows}
    out = []
    for dataset, name, runs in results.configs():
        row = by_name.get(name)
        if row is None:
            continue
        key = "test_clean_accuracy" if "test_clean_accuracy" in row else "test_accuracy"
        if row.get(key) is None or row.get("params_trainable") is None:
            continue
        first = runs.iloc[0]
        axes = first.get("axes") if "axes" in runs else None
        point = {"config": name, "group": " / ".join(
            p for p in (dataset if results.runs["dataset"].nunique() > 1 else "",
                        axes if isinstance(axes, str) else "") if p) or "all",
                 "strategy": first["strategy"], "model": first["model"],
                 "accuracy": row[key], "subset": "clean" if "clean" in key else "full",
                 "ci95": row.get(f"{key}_ci95") or row.get(f"{key}_seed_ci95"),
                 "params_trainable": row["params_trainable"],
                 "fit_seconds": _mean(runs, "fit_seconds")}
        point |= {metric: _mean(runs, metric) for metric in EXTRA}
        out.append(point)
    for cost in COSTS:
        for group in {p["group"] for p in out}:
            members = [p for p in out if p["group"] == group and p[cost] is not None]
            for p in members:
                p[f"pareto_{cost}"] = not any(_dominates(q, p, cost) for q in members)
    return out


def _dominates(q: dict, p: dict, cost: str) -> bool:
    return (q is not p and q["accuracy"] >= p["accuracy"] and q[cost] <= p[cost]
            and (q["accuracy"] > p["accuracy"] or q[cost] < p[cost]))


def on_frontier(points: list[dict]) -> list[str]:
    """Plain sentences: which strategies are on each frontier, per group."""
    lines = []
    for group in sorted({p["group"] for p in points}, key=natural_key):
        mine = [p for p in points if p["group"] == group]
        for cost, words in COSTS.items():
            best = sorted((p for p in mine if p.get(f"pareto_{cost}")), key=lambda p: p[cost])
            if best:
                lines.append(f"{group}, accuracy vs {words}: on the frontier "
                             + ", ".join(f"{p['config']} ({p['accuracy']:.3f})" for p in best))
    return lines


def display(points: list[dict]) -> list[dict]:
    shown = []
    for p in points:
        low, high = p["ci95"] or (None, None)
        row = {"group": p["group"], "config": p["config"],
               f"{p['subset']} acc [95% CI]": f"{p['accuracy']:.3f}"
               + (f" [{low:.3f}, {high:.3f}]" if low is not None else ""),
               "trainable": f"{p['params_trainable']:,}",
               "train s": None if p["fit_seconds"] is None else f"{p['fit_seconds']:.1f}"}
        row |= {title: None if p[m] is None else f"{p[m]:.3g}" for m, title in EXTRA.items()}
        row["frontier"] = ", ".join(w.split()[-1] for c, w in COSTS.items()
                                    if p.get(f"pareto_{c}")) or "-"
        shown.append(row)
    return shown


def frontier_figure(points: list[dict]):
    """Two panels, accuracy against each cost (log x); filled markers are Pareto-optimal in
    their group, and a step line joins them."""
    groups = sorted({p["group"] for p in points}, key=natural_key)
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, (cost, words) in zip(axes, COSTS.items()):
        for group in groups:
            mine = sorted((p for p in points if p["group"] == group and p[cost] is not None),
                          key=lambda p: p[cost])
            for p in mine:
                low, high = p["ci95"] or (p["accuracy"], p["accuracy"])
                on = p.get(f"pareto_{cost}")
                ax.errorbar(p[cost], p["accuracy"],
                            yerr=[[p["accuracy"] - low], [high - p["accuracy"]]], fmt="o",
                            color=colours[group], mfc=colours[group] if on else "white",
                            capsize=3, alpha=0.9)
                ax.annotate(p["strategy"], (p[cost], p["accuracy"]), textcoords="offset points",
                            xytext=(5, 3), fontsize=7)
            best = [p for p in mine if p.get(f"pareto_{cost}")]
            if best:
                ax.step([p[cost] for p in best], [p["accuracy"] for p in best], where="post",
                        color=colours[group], alpha=0.5, label=group)
        ax.set_xscale("log")
        ax.set_xlabel(f"{words} (log scale)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"{points[0]['subset']} test accuracy (95% CI)")
    if len(groups) > 1:
        axes[1].legend(fontsize=7, title="filled: Pareto-optimal", title_fontsize=7)
    else:
        axes[1].set_title("filled: Pareto-optimal", fontsize=8)
    fig.tight_layout()
    return fig


def sections(results, rows: list[dict], folder: Path, save, csv) -> list:
    """The report's frontier section (report/files.py lays it out), none with < 2 points."""
    from mribench.report.html import Section

    points = frontier_rows(results, rows)
    if len(points) < 2:
        return []
    flat = [{k: v for k, v in p.items() if k != "ci95"} | {
        "ci95_low": (p["ci95"] or [None, None])[0], "ci95_high": (p["ci95"] or [None, None])[1]}
        for p in points]
    return [Section("Accuracy-cost frontier", [
        "How to transfer, at what cost: one point per configuration, accuracy against the "
        "parameters the optimizer trains and against the seconds the strategy spent fitting "
        "(both log scale, this machine). A filled point is Pareto-optimal within its group (no "
        "configuration is as accurate for less, or more accurate for as little).",
        *on_frontier(points)],
        table=display(points), figure=save(frontier_figure(points), folder, "frontier.png"),
        files=[csv(flat, folder, "frontier.csv")])]
