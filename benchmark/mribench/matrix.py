"""Expand a suite into cells (dataset x model x strategy x seed x fold, crossed with the suite's
`axes:`), each with a stable run_key."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from mribench.config import axis
from mribench.config.artifacts import ArtifactsConfig
from mribench.config.robustness import RobustnessConfig
from mribench.config.schema import (
    AugmentConfig,
    DatasetConfig,
    ExplainConfig,
    ModelConfig,
    PreprocessConfig,
    SplitConfig,
    StrategyConfig,
    Suite,
    TrainingConfig,
)
from mribench.errors import UserError

# Display-only fields: renaming a label must not make finished work look new.
_DISPLAY_ONLY = {"label"}


@dataclass(frozen=True)
class Cell:
    dataset: DatasetConfig
    model: ModelConfig
    strategy: StrategyConfig
    seed: int
    fold: int | None
    split: SplitConfig
    preprocess: PreprocessConfig
    augment: AugmentConfig
    training: TrainingConfig
    explain: ExplainConfig
    # display only: name the dataset in titles when the suite has several
    several_datasets: bool = False
    # display only: ((axis label, value), ...) of the suite's axes this cell takes; the values
    # themselves are in the config (and so in the run_key)
    axes: tuple[tuple[str, Any], ...] = ()
    robustness: RobustnessConfig | None = None  # the dataset's block, else the suite's
    # what the cell keeps (its model, its checkpoints): not what it computes, not in the run_key
    artifacts: ArtifactsConfig = ArtifactsConfig()

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config of this cell: what the run_key hashes and what gets logged."""
        def dump(m):
            return _drop_display(m.model_dump(mode="json"))

        dataset = dump(self.dataset)
        # the fallback is resolved before expansion (data/fallback.py): `name` is the data used
        dataset.pop("fallback")
        for later in ("label_map", "train_per_class"):  # added later: unset keeps run_keys
            if dataset.get(later) is None:
                dataset.pop(later, None)
        model = dump(self.model)
        head = model["head"]
        if not head.get("layers"):  # added later: at their defaults they keep earlier run_keys
            head.pop("layers", None)
        if head.get("keep_dropout") is False:
            head.pop("keep_dropout", None)
        model.pop("training")  # already merged into `training`
        model.pop("preprocess")  # already merged into `preprocess`
        model.pop("explain")  # already merged into `explain`
        model.pop("strategies")  # selects cells; not part of any one cell's identity
        dataset.pop("split")  # already resolved into `split`
        split = dump(self.split)
        # added later: the robust matcher's thresholds matter only where robust copies are
        # looked for, and no hold-out is the split before it existed; both keep run_keys
        if "robust" not in (self.dataset.dedup, self.split.groups):
            dataset.pop("copy_match", None)
        if split.get("hold_out") is None:
            split.pop("hold_out", None)
        dataset.pop("robustness", None)  # resolved into `robustness`
        return {
            "dataset": dataset, "split": split,
            "preprocess": dump(self.preprocess), "augment": dump(self.augment),
            "training": dump(self.training), "model": model, "strategy": dump(self.strategy),
            "explain": dump(self.explain), "seed": self.seed, "fold": self.fold,
            # added later: present only when declared, so earlier run_keys stay
            **({"robustness": self.robustness.identity()} if self.robustness else {}),
        }

    @cached_property
    def run_key(self) -> str:
        return _digest(self.resolved())

    @cached_property
    def config_key(self) -> str:
        """The run_key without seed and fold: cells that are repeats of one configuration."""
        return _digest({k: v for k, v in self.resolved().items() if k not in ("seed", "fold")})

    @property
    def title(self) -> str:
        """The run name: what tells cells apart comes first, so MLflow's runs table (which cuts
        long names) still shows model, strategy and seed."""
        fold = "" if self.fold is None else f" fold {self.fold}"
        dataset = f" / {self.dataset.name}" if self.several_datasets else ""
        axes = "".join(f" / {name} {value}" for name, value in self.axes)
        return (f"{self.model.display} / {self.strategy.display}{axes} / seed {self.seed}{fold}"
                f"{dataset}")

    @property
    def axes_label(self) -> str:
        """`train_per_class=10, image_size=128`: what tells this cell's configuration apart from
        the suite's others beyond model and strategy."""
        return ", ".join(f"{name}={value}" for name, value in self.axes)

    def tags(self) -> dict[str, str]:
        return {"dataset": self.dataset.name, "model": self.model.display,
                "strategy": self.strategy.display, "seed": str(self.seed),
                "fold": "-" if self.fold is None else str(self.fold), "run_key": self.run_key,
                "config_key": self.config_key,
                **({"axes": self.axes_label} if self.axes else {}),
                **{f"axis.{name}": str(value) for name, value in self.axes}}


# How a cell is executed, not what it computes: left out of the run_key.
_EXECUTION_ONLY = {"num_workers", "compile", "checkpoint_every"}
# Keys added after run_keys were first published, at the value that reproduces the behaviour
# before them (CPU runs trained in fp32, which is what `auto` picks there): left out of the hash
# at that value, so runs finished before the key existed still count as finished.
_ADDED_LATER = {"precision": "auto", "deterministic": False, "max_loss": 100.0,
                "max_loss_batches": 10, "layer_decay": None}


def _digest(resolved: dict[str, Any]) -> str:
    """Hash of what determines a cell's results (how many loader workers ran it does not)."""
    identity = {**resolved, "training": {
        k: v for k, v in resolved["training"].items()
        if k not in _EXECUTION_ONLY and not (k in _ADDED_LATER and v == _ADDED_LATER[k])}}
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _drop_display(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_display(v) for k, v in value.items() if k not in _DISPLAY_ONLY}
    return value


def folds_of(split: SplitConfig) -> list[int | None]:
    return list(range(split.folds)) if split.protocol == "kfold" else [None]


def expand(suite: Suite) -> list[Cell]:
    if not suite.axes:
        return _unique(_expand_one(suite), suite)
    cells = []
    for values, entries, variant in axis.variants(suite):
        cells += [replace(c, axes=values) for c in _expand_one(variant)
                  if axis.allowed(entries, c.strategy, c.model)]
    return _unique(cells, suite)


def _expand_one(suite: Suite) -> list[Cell]:
    return [
        Cell(dataset=ds, model=model, strategy=strategy, seed=seed, fold=fold,
             split=ds.split or suite.split, preprocess=suite.preprocess_for(model),
             augment=suite.augment, training=suite.training_for(model), explain=suite.explain_for(model),
             several_datasets=len(suite.datasets) > 1,
             robustness=ds.robustness or suite.robustness, artifacts=suite.artifacts)
        for ds in suite.datasets
        for model in suite.models
        for strategy in suite.strategies
        if model.strategies is None or {strategy.name, strategy.display} & set(model.strategies)
        for seed in suite.seeds
        for fold in folds_of(ds.split or suite.split)
    ]


def _unique(cells: list[Cell], suite: Suite) -> list[Cell]:
    keys = [c.run_key for c in cells]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        same = [c.title for c in cells if c.run_key in dupes]
        hint = _duplicate_hint(suite) if suite.axes else ""
        shown = same[:4] + ([f"... {len(same) - 4} more"] if len(same) > 4 else [])
        raise UserError(f"the suite declares the same cell more than once{hint}: {shown}")
    return cells


def _duplicate_hint(suite: Suite) -> str:
    """Why an axis repeats cells, and what to write instead."""
    indexed = axis.indexed_items(suite.axis_list)
    if not indexed:
        return (" (an axis value that changes nothing: a per-model override of the same setting "
                "takes precedence?)")
    causes = ", ".join(f"axes.{path} sets one of the {items} only" for path, items in indexed)
    fixes = []
    if any(items == "strategies" for _, items in indexed):
        fixes.append("give its values `only: {strategy: [NAME]}`")
    if any(items == "models" for _, items in indexed):
        fixes.append("give its values `only: {model: [NAME]}`")
    if any(items == "datasets" for _, items in indexed):
        fixes.append("use one axis datasets[*].SETTING (`only:` selects strategies and models, "
                     "not datasets; axes on two datasets cross each other)")
    return (f" ({causes}: the cells of the others do not take its values, so every value "
            f"repeats them; {' or '.join(fixes)})")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'training': {'lr': 1e-3}} -> {'training.lr': 1e-3}, for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
