"""Typed, strict suite schema: the `Suite` itself; each section's model has its own module
(split.py, dataset.py, images.py, model.py, network.py, training.py, ...), and every name
callers use is importable from here.

A suite YAML is validated into a frozen `Suite`. Unknown keys, unknown names, wrong types and
impossible values are errors that name the YAML path of the offending key (e.g.
`models[1].head.hidden`) and what was expected, raised before anything runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from mribench.config.artifacts import ArtifactsConfig
from mribench.config.axis import Axis, check_only, parse_axes
from mribench.config.axis import base_valid as axis_base_valid
from mribench.config.axis import check as check_axes
from mribench.config.copies import CopyMatchConfig  # noqa: F401
from mribench.config.dataset import DatasetConfig
from mribench.config.explain import EXPLAIN_METHODS, MODEL_EXPLAIN_KEYS, ExplainConfig  # noqa: F401
from mribench.config.external import ExternalConfig  # noqa: F401
from mribench.config.images import AugmentConfig, PreprocessConfig
from mribench.config.model import ModelConfig
from mribench.config.network import KNN_DEFAULT_K, HeadConfig, StrategyConfig  # noqa: F401
from mribench.config.published import Deviation, PublishedResult, check_published
from mribench.config.resources import ResourcesConfig
from mribench.config.robustness import RobustnessConfig, check_reference
from mribench.config.split import HoldOutConfig, SplitConfig  # noqa: F401
from mribench.config.strict import Strict
from mribench.config.training import TrainingConfig
from mribench.config.types import (  # noqa: F401  (re-exported: callers import them from here)
    MAX_EXPERIMENT,
    Fraction,
    Hashable,
    PosInt,
    StrictPosInt,
    SuiteError,
    TrainFraction,
)
from mribench.errors import UserError

# the suites shipped with the package (a link to the repository's suites/ folder, copied into
# the wheel), so a bare suite name works from any directory
SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"  # mribench/suites


class Suite(Strict):
    # the default experiment, 'benchmark-<name>', must fit MLflow's bound too
    name: str = Field(
        min_length=1, max_length=MAX_EXPERIMENT - len("benchmark-"), description="The suite's name; by "
        "convention the file name.")
    description: str = Field("", description="One line shown by dry runs and reports.")
    # MLflow refuses experiment names over 500 characters; bounded here so it fails up front
    experiment: Annotated[str, Field(min_length=1, max_length=MAX_EXPERIMENT)] | None = Field(
        None, description="MLflow experiment (default benchmark-<name>).")
    datasets: list[DatasetConfig] = Field(
        min_length=1, description="Datasets; each is crossed with the models, strategies and seeds.")
    split: SplitConfig = Field(
        SplitConfig(), description="How every dataset is split unless it carries its own split.")
    preprocess: PreprocessConfig = Field(
        PreprocessConfig(), description="Decoding and resizing of every image.")
    augment: AugmentConfig = Field(AugmentConfig(), description="Random training-time augmentation.")
    training: TrainingConfig = Field(
        TrainingConfig(), description="Training settings (models may override them).")
    models: list[ModelConfig] = Field(min_length=1, description="Models of the matrix.")
    strategies: list[StrategyConfig] = Field(
        min_length=1, description="Transfer strategies of the matrix; a bare name is shorthand for "
        "{name: NAME}.")
    seeds: list[int] = Field(
        default_factory=lambda: [0], min_length=1, description="Seeds: each fixes the split, the "
        "initialisation, the batch order and the augmentation.")
    explain: ExplainConfig = Field(ExplainConfig(), description="Explanations of every cell.")
    published: list[PublishedResult] = Field(
        default_factory=list, description="The paper's figures, printed by the report beside ours.")
    # how the suite departs from the paper its published figures come from; required (an empty
    # list when there is none) whenever `published` is given
    deviations: list[Deviation] | None = Field(
        None, description="How the suite departs from the paper its published figures come from; "
        "required (an empty list when there is none) whenever published is given.")
    resources: ResourcesConfig = Field(
        ResourcesConfig(), description="What one cell asks of a Ray cluster (--executor ray).")
    artifacts: ArtifactsConfig = Field(
        ArtifactsConfig(), description="What each cell keeps: its logged model, its checkpoints.")
    robustness: RobustnessConfig | None = Field(
        None, description="MRI artefacts (TorchIO) at graded severities every cell's test images "
        "are also scored under (docs/robustness.md).")
    # any config value as one more matrix axis (config/axis.py)
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict, description=(
            "More matrix axes: a config path (`training.lr`, `preprocess.image_size`, "
            "`datasets[*].train_per_class`) -> the values it takes, crossed with datasets x "
            "models x strategies x seeds. A value may be {value: V, only: {strategy: [...], "
            "model: [...]}} to run it for some strategies or models only."))

    @property
    def axis_list(self) -> list[Axis]:
        return parse_axes(self.axes)

    @model_validator(mode="after")
    def _axes_valid(self):
        if self.axes and axis_base_valid(self):
            check_only(self.axis_list, {s.display for s in self.strategies}
                       | {s.name for s in self.strategies},
                       {m.display for m in self.models} | {m.name for m in self.models})
            check_axes(self)  # every value validated as the suite itself is
        return self

    @field_validator("strategies", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # `- frozen` is shorthand for `- {name: frozen}`
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _model_strategies_declared(self):
        declared = {s.display for s in self.strategies} | {s.name for s in self.strategies}
        for i, model in enumerate(self.models):
            unknown = sorted(set(model.strategies or []) - declared)
            if unknown:
                raise UserError(f"models[{i}].strategies names {unknown}, which the suite's "
                                 f"strategies do not declare (declared: {sorted(declared)})")
        return self

    @model_validator(mode="after")
    def _published_refers_to_cells(self):
        models = {m.display for m in self.models} | {m.name for m in self.models}
        strategies = {s.display for s in self.strategies} | {s.name for s in self.strategies}
        for i, p in enumerate(self.published):
            if p.model not in models or p.strategy not in strategies:
                raise UserError(f"published[{i}] names model {p.model!r} / strategy "
                                 f"{p.strategy!r}; the suite declares models {sorted(models)} "
                                 f"and strategies {sorted(strategies)}")
        protocols = sorted({(ds.split or self.split).protocol for ds in self.datasets})
        check_published(self.published, self.deviations, protocols)
        for where, block in [("robustness", self.robustness),
                             *((f"datasets[{i}].robustness", d.robustness)
                               for i, d in enumerate(self.datasets))]:
            check_reference(block, models, strategies, where)
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"benchmark-{self.name}"

    def explain_for(self, model: ModelConfig) -> ExplainConfig:
        return self.explain.model_copy(update=model.explain)

    def training_for(self, model: ModelConfig) -> TrainingConfig:
        return self.training.model_copy(update=TrainingConfig(**model.training).model_dump(
            exclude_unset=True))

    def preprocess_for(self, model: ModelConfig) -> PreprocessConfig:
        return self.preprocess.model_copy(update=PreprocessConfig(**model.preprocess).model_dump(
            exclude_unset=True))
