"""Which logged model a command means: a run id, a runs:/ or models:/ URI, or a suite's cell."""
from __future__ import annotations

import re
import shlex
import tempfile
from pathlib import Path

from mribench.errors import UserError


class ModelNotFound(UserError):
    """No logged model answers to what the user named; the message says what exists."""


def model_uri(model: str | None, suite: str | None = None, model_name: str | None = None,
              strategy: str | None = None, seed: int | None = None,
              dataset: str | None = None) -> str:
    """The URI of the model named by MODEL, or by --suite/--model/--strategy/--seed."""
    if suite:
        return cell_model(suite, model_name, strategy, seed, dataset)
    if not model:
        raise ModelNotFound("name a model: a run id, runs:/<run id>/model, models:/<name>@<alias> "
                            "(or /<version>), or --suite S --model M --strategy X --seed N")
    if model.startswith(("runs:/", "models:/")):
        return model
    if re.fullmatch(r"[0-9a-f]{32}", model):
        return cell_of_parent(model, model_name, strategy, seed, dataset) or f"runs:/{model}/model"
    if re.fullmatch(r"m-[0-9a-f]{32}", model):
        return f"models:/{model}"
    raise ModelNotFound(f"model {model!r} is not a run id, a runs:/ or models:/ URI; or name a "
                        "suite cell with --suite S --model M --strategy X --seed N")


def cell_of_parent(run_id: str, model: str | None, strategy: str | None, seed: int | None,
                   dataset: str | None) -> str | None:
    """A suite's parent run id (what `mribench suite` prints last) names no model itself: the
    model of its one cell matching --model/--strategy/--seed/--dataset, or a ModelNotFound
    listing its cells and how to pick one. None when `run_id` is not a parent run."""
    from mribench import tracking

    tracking.experiment_id_of("Default")  # points MLflow at the store, one line if unusable
    children = tracking.child_runs(run_id)
    if children is None:  # no such run: the caller's runs:/ URI reports it
        return None
    # cells carry a run_key; a cell's own children (`mribench evaluate` runs) do not, and do not
    # make it a suite run
    children = [r for r in children if "run_key" in r.tags]
    if not children:
        return None
    wanted = {"model": model, "strategy": strategy, "seed": None if seed is None else str(seed),
              "dataset": dataset}
    picked = [r for r in children if r.status == "FINISHED"
              and all(v is None or r.tags.get(k) == v
                      or (k == "model" and r.tags.get("model_name") == v)
                      for k, v in wanted.items())]
    if len(picked) == 1 and any(v is not None for v in wanted.values()):
        return f"runs:/{picked[0].run_id}/model"
    lines = [f"  {r.run_id}  {r.name} ({r.status.lower()})" for r in children]
    first = children[0].tags
    chosen = ", ".join(f"--{k} {v}" for k, v in wanted.items() if v is not None)
    why = (f"{len(picked)} of them match {chosen}" if chosen else
           "name one of them")
    raise ModelNotFound(
        f"run {run_id} is a suite run: its cells logged the models, not it; {why}. Its "
        f"{len(children)} cell run(s):\n" + "\n".join(lines)
        + f"\npick one: `mribench predict <cell run id> IMAGES`, or keep the suite run id and add "
        f"--model/--strategy/--seed, e.g. --model {shlex.quote(first.get('model', 'M'))} "
        f"--strategy {shlex.quote(first.get('strategy', 'S'))} --seed {first.get('seed', 'N')}")


def cell_model(suite_name: str, model: str | None, strategy: str | None, seed: int | None,
               dataset: str | None) -> str:
    """The newest finished run of the suite's cell (the suite as it is now: its run_key)."""
    from mribench import tracking
    from mribench.config.suite_file import load_suite
    from mribench.data import fallback
    from mribench.matrix import expand

    suite = load_suite(suite_name)
    if model is None or strategy is None:
        raise ModelNotFound("--suite needs --model and --strategy (and --seed when the suite has "
                            "several seeds)")
    cells = [c for version in fallback.alternatives(suite) for c in expand(version)
             if model in (c.model.display, c.model.name)
             and strategy in (c.strategy.display, c.strategy.name)
             and (seed is None or c.seed == seed)
             and (dataset is None or c.dataset.name == dataset)]
    if not cells:
        raise ModelNotFound(f"suite {suite.name!r} has no cell with model {model!r}, strategy "
                            f"{strategy!r}" + (f", seed {seed}" if seed is not None else "")
                            + f"; its models: {[m.display for m in suite.models]}, strategies: "
                            f"{[s.display for s in suite.strategies]}, seeds: {suite.seeds}")
    exp_id = tracking.experiment_id_of(suite.experiment_name)
    runs = [] if exp_id is None else [r for c in cells for r in tracking.runs_of_key(exp_id, c.run_key)
                                      if r.status == "FINISHED"]
    if not runs:
        raise ModelNotFound(f"suite {suite.name!r}: cell {cells[0].title} has no finished run in "
                            f"experiment {suite.experiment_name!r} at {tracking.tracking_uri()}; "
                            "run the suite first")
    keys = {r.tags.get("run_key") for r in runs}
    if len(keys) > 1:
        titles = ", ".join(c.title for c in cells)
        raise ModelNotFound(f"suite {suite.name!r}: {len(keys)} cells match ({titles}); name one "
                            "with --seed (and --dataset)")
    return f"runs:/{max(runs, key=lambda r: r.start_time).run_id}/model"


def fetch(uri: str, device: str = "cpu"):
    """(Predictor, run id of the model) for the model at `uri`, downloaded to a temporary
    folder; one line when no such model exists."""
    import os

    from mribench import tracking
    from mribench.tracking import logged_model

    tracking.experiment_id_of("Default")  # points MLflow at the store, one line if unusable
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # a bar per file otherwise
    tmp = tempfile.mkdtemp(prefix="mribench-model-")
    try:
        package = logged_model.download_package(uri, tmp)
        run_id = logged_model.run_of_model(uri)
    except Exception as err:  # MLflow's "not found" errors come in several types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ModelNotFound(f"no logged model at {uri} in {tracking.tracking_uri()}: {first}") \
            from None
    if not Path(package, "manifest.json").exists():
        raise ModelNotFound(f"{uri} is not a model logged by mribench (no package inside)")
    return open_package(Path(package), f"run {run_id} ({uri})", device), run_id


class ModelDamaged(UserError):
    """A logged model whose files cannot be used; the message names the run and the file."""


def open_package(package: Path, where: str, device: str):
    """The Predictor of a downloaded package; a file that is missing, truncated, not what it
    should be, or does not fit the network the manifest describes is one line naming it."""
    import json

    import torch

    from mribench.models.packaged import MANIFEST, WEIGHTS, Predictor

    def damaged(name: str, why: str) -> ModelDamaged:
        return ModelDamaged(f"the logged model of {where} is damaged: {name} {why}; log it again "
                            "(rerun its cell with --force) or name another model")

    try:
        if not (package / MANIFEST).is_file():
            raise ValueError("is not a regular file")
        meta = json.loads((package / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or "classes" not in meta:
            raise ValueError("holds no model description")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise damaged(MANIFEST, f"cannot be read ({_why(err)})") from None
    if not (package / WEIGHTS).is_file():
        raise damaged(WEIGHTS, "is missing")
    try:  # mapped, not read: a truncated or foreign file fails here at no cost
        torch.load(package / WEIGHTS, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise damaged(WEIGHTS, f"cannot be read ({_why(err)})") from None
    try:
        return Predictor(package, device=device)
    except RuntimeError as err:  # load_state_dict: names or shapes differ
        raise damaged(WEIGHTS, f"does not fit the network {MANIFEST} describes "
                      f"({_why(err)})") from None
    except (KeyError, TypeError, ValueError) as err:  # a manifest missing or mangling a key
        raise damaged(MANIFEST, f"is incomplete ({_why(err)})") from None


def _why(err: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        from mribench.config.problems import one_line

        return one_line(err)
    text = " ".join(str(err).split())[:200]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
