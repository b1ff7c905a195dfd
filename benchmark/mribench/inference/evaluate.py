"""`mribench evaluate`: a logged model on a set it has not seen, logged as a nested run under
the model's run, with the external-set machinery (run/external.py): label and prediction maps,
and the duplicate audit against the model's own training and validation images (their hashes
travel inside the model: models/packaged.py)."""
from __future__ import annotations

import csv

from mribench.console import emit_table
from mribench.inference.locate import ModelDamaged, fetch

SHOWN = ("n", "accuracy", "balanced_accuracy", "f1_macro", "kappa", "mcc", "ece")


def evaluate(uri: str, cfg, data_dir: str | None, device: str = "cpu",
             as_json: bool = False) -> int:
    from mribench import tracking
    from mribench.data import images
    from mribench.models.packaged import read_seen
    from mribench.run import external, stopping
    from mribench.tracking import logged_model

    predictor, run_id = fetch(uri, device)
    ext = external.prepare_external(cfg, predictor.pre, predictor.classes, data_dir)
    rows = images.pixels_for([s.path for s in ext.samples], predictor.pre)  # decoded once, cached
    # raw: score_external scores them raw and calibrated with the model's temperature
    probs = predictor.probabilities([store.read(sha) for store, sha in rows], raw=True)
    try:
        seen = read_seen(predictor.folder)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ModelDamaged(f"the logged model of run {run_id} ({uri}) is damaged: "
                           f"seen_images.csv cannot be read ({err}); log it again (rerun its "
                           "cell with --force)") from None
    exp_id = logged_model.experiment_of(run_id)
    title = f"evaluate on {cfg.name}"
    tags = {"role": "evaluation", "evaluated_model": uri, "external_set": cfg.name,
            "model_run_key": predictor.meta["run_key"]}
    child = None
    try:
        with stopping.held():  # a stop lands after `child` is known, so it can be closed
            child = tracking.create_run(exp_id, title, tags, parent_run_id=run_id)
        with tracking.cell_run(title, tags, role="evaluation", run_id=child):
            tracking.log_params({"model_uri": uri, "external_set": cfg.name,
                                 "label_map": cfg.label_map, "prediction_map": cfg.prediction_map,
                                 "near_bits": cfg.near_bits, "classes": ext.classes})
            external.score_external(ext, probs, [(r["sha256"], r["phash"]) for r in seen],
                                    [r["file"] for r in seen],
                                    f"{len(seen)} training and validation images of the model's "
                                    f"cell ({predictor.meta['cell']}, run {run_id})",
                                    predictor.temperature or 1.0)
    except BaseException as err:  # a signal included: the run never stays RUNNING
        _closed(child, err)
        raise
    logged = logged_model.run_metrics(child)
    out = []
    for subset, prefix in (("whole", f"external_{cfg.key}"), ("clean", f"external_clean_{cfg.key}")):
        if f"{prefix}_accuracy" not in logged:
            continue  # every image duplicated one the model had seen
        n = logged[f"external_{cfg.key}_n" if subset == "whole" else f"external_{cfg.key}_n_clean"]
        out.append({"subset": subset, "n": int(n),
                    **{k: logged[f"{prefix}_{k}"] for k in SHOWN[1:] if f"{prefix}_{k}" in logged}})
    counts = {k: int(logged[f"external_{cfg.key}_{k}"])
              for k in ("n_exact_duplicates", "n_near_duplicates")}
    emit_table(out, f"{predictor.meta['cell']} on {cfg.name} ({counts['n_exact_duplicates']} exact "
               f"and {counts['n_near_duplicates']} near copies of its training/validation images "
               "left out of clean)", as_json,
               extra={"model": uri, "model_run_id": run_id, "evaluation_run_id": child, **counts})
    return 0


def _closed(run_id: str | None, err: BaseException) -> None:
    """End the evaluation run KILLED (a signal) or FAILED if `cell_run` had not (the error came
    before it started), and note it for the line the command ends with."""
    from mribench import tracking

    if run_id is None:  # stopped before the run was stored
        return
    killed = not isinstance(err, Exception)
    try:
        ended = tracking.close_if_running(run_id, "KILLED" if killed else "FAILED",
                                           f"{type(err).__name__}: {err}",
                                           err.name if getattr(err, "signum", None) else None)
    except Exception:  # the store itself failed: the original error is what the user sees
        return
    if killed and ended == "KILLED":  # a signal after the run ended FINISHED cut nothing short
        err.notes = [*getattr(err, "notes", []), f"the evaluation run {run_id} was marked KILLED"]
