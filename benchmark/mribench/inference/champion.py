"""`mribench report S --register NAME`: the suite's best configuration's model in the Model
Registry, alias `champion`, with the report's figures as its description."""
from __future__ import annotations

import pandas as pd

from mribench.console import console
from mribench.inference.locate import ModelNotFound

ALIAS = "champion"


def best_run(rows: list[dict], runs: pd.DataFrame) -> tuple[dict, pd.Series, str]:
    """(configuration row, run, metric): the configuration with the highest mean clean-test
    accuracy (test accuracy when no run has a clean subset), the metric the report leads with;
    of its runs, the one whose test accuracy is the median (the lower one of an even count)."""
    metric = "test_clean_accuracy" if any(r.get("test_clean_accuracy") is not None
                                          for r in rows) else "test_accuracy"
    scored = [r for r in rows if r.get(metric) is not None]
    if not scored:
        raise ModelNotFound(f"no configuration has a {metric}: nothing to register")
    best = max(scored, key=lambda r: r[metric])
    members = runs[(runs["config_key"] == best["config_key"])
                   & (runs["dataset"] == best["dataset"])]
    members = members.assign(acc=pd.to_numeric(members["test_accuracy"], errors="coerce"))
    members = members.sort_values(["acc", "seed"]).reset_index(drop=True)
    return best, members.iloc[(len(members) - 1) // 2], metric


def register_best(name: str, suite_name: str, rows: list[dict], runs: pd.DataFrame) -> dict:
    from mribench.tracking import logged_model

    best, run, metric = best_run(rows, runs)
    run_id = run["run_id"]
    uri = logged_model.logged_model_uri(run_id)
    if uri is None:
        raise ModelNotFound(f"run {run_id} ({best['config']}, seed {run['seed']}) logged no "
                            "model (artifacts.model: none, or it predates logged models); rerun "
                            "that cell with --force to log one")
    ci = best.get(f"{metric}_ci95")
    interval = f" [95% CI {ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    what = f"{best['model']} / {best['strategy']}"
    what += f" ({best['config']})" if best["config"] not in (what, best["strategy"]) else ""
    description = (f"Best configuration of suite {suite_name} by mean {metric}: {what} "
                   f"on {best['dataset']}, {metric} {best[metric]:.3f}{interval} over {best['n']} "
                   f"run(s); test accuracy {best.get('test_accuracy', float('nan')):.3f}. This "
                   f"version: seed {run['seed']} (the median test accuracy of the "
                   f"configuration, {run['acc']:.3f}), run {run_id}, run_key "
                   f"{run['run_key']}.")
    version = logged_model.register(uri, name, ALIAS, description)
    console.print(f"registered {name} version {version} ({what}, seed "
                  f"{run['seed']}) with alias {ALIAS}: use models:/{name}@{ALIAS}",
                  markup=False, highlight=False)
    return {"registered_model": name, "version": version, "alias": ALIAS, "run_id": run_id,
            "config": best["config"], "metric": metric, "description": description}
