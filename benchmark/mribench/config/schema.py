"""Typed, strict suite schema.

A suite YAML is validated into a frozen `Suite`. Unknown keys, unknown names, wrong types and
impossible values are errors that name the YAML path of the offending key (e.g.
`models[1].head.hidden`) and what was expected, raised before anything runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mribench.config.artifacts import ArtifactsConfig
from mribench.config.axis import Axis, check_only, parse_axes
from mribench.config.axis import base_valid as axis_base_valid
from mribench.config.axis import check as check_axes
from mribench.config.copies import CopyMatchConfig
from mribench.config.explain import EXPLAIN_METHODS, MODEL_EXPLAIN_KEYS, ExplainConfig  # noqa: F401
from mribench.config.external import ExternalConfig, known_or_declared
from mribench.config.network import KNN_DEFAULT_K, HeadConfig, StrategyConfig  # noqa: F401
from mribench.config.published import Deviation, PublishedResult, check_published
from mribench.config.resources import ResourcesConfig
from mribench.config.robustness import RobustnessConfig, check_reference
from mribench.config.strict import Strict
from mribench.config.training import TrainingConfig  # noqa: F401
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


class HoldOutConfig(Hashable):
    """Images held out of training and validation entirely: they, and only they, are the test
    split (data/splits.py). Values are the labels `mribench data audit` shows; an image matching
    any listed value of any key is held out."""
    source: list[str] | None = Field(
        None, min_length=1, description="Source labels to hold out (data/provenance.py: "
        "sartaj, figshare, br35h on the 7023 set; file-name families such as 'gg (N)' elsewhere).")
    size: list[str] | None = Field(
        None, min_length=1, description="Original image sizes to hold out, as WIDTHxHEIGHT "
        "(e.g. 512x512).")
    format: list[str] | None = Field(
        None, min_length=1, description="File formats to hold out, as Pillow names them (JPEG, PNG).")

    @model_validator(mode="after")
    def _some(self):
        if not (self.source or self.size or self.format):
            raise UserError("hold_out needs at least one of source, size, format")
        return self


class SplitConfig(Strict):
    protocol: Literal["official", "holdout", "kfold"] = Field(
        "official", description="official: the publisher's Training/Testing folders, validation carved "
        "from Training; holdout: everything pooled, stratified train/val/test; kfold: stratified k "
        "folds, each fold a cell.")
    # duplicate groups that every split keeps on one side (the official train/test folders
    # excepted: the publisher drew those; the clean test subset deals with their leaks)
    groups: Literal["near", "exact", "robust", "none"] = Field(
        "near", description="Duplicate groups that every split keeps on one side, so a copy of a "
        "training image is never a test image of a split drawn here (the publisher's official folders "
        "excepted); robust: also cropped, rescaled or rotated copies (copy_match).")
    val_fraction: Fraction = Field(
        0.15, description="Share of the training side carved out for validation, stratified, whole "
        "duplicate groups.")
    test_fraction: Fraction = Field(
        0.2, description="holdout only: share of the pooled images held out for testing.")
    folds: Annotated[int, Field(ge=2)] = Field(
        5, description="kfold only: number of stratified group folds.")
    hold_out: HoldOutConfig | None = Field(
        None, description="Hold a source or property bin out of training: its images are the "
        "test split, train/val are drawn from the rest (protocol holdout only; test_fraction "
        "unused).")

    @model_validator(mode="after")
    def _hold_out_protocol(self):
        if self.hold_out is not None and self.protocol != "holdout":
            raise UserError(f"hold_out needs protocol: holdout (got {self.protocol!r}): the "
                             "held-out images are the test split, the rest train and validate")
        return self

class DatasetConfig(Hashable):
    name: str = Field(
        min_length=1, description="A registered dataset, or a label for a user dataset declared with "
        "root or manifest.")
    root: str | None = Field(
        None, description="Folder of class sub-folders, optionally inside split folders such as "
        "Training/ and Testing/.")
    manifest: str | None = Field(
        None, description="CSV file with columns path,label[,split] (may start with a BOM).")
    subset_per_class: PosInt | None = Field(
        None, description="Deterministic subset: the first N files per class and split.")
    # training-set size after the split (val and test untouched): N files per class, a
    # fraction of each class, or all; nested across sizes for one seed (data/train_size.py)
    # a strict int: pydantic's lax int would read `1.0` (meant: the whole class) and `true` as 1
    # image per class
    train_per_class: StrictPosInt | TrainFraction | Literal["all"] | None = Field(
        None, description="Training-set size after the split (validation and test untouched): N "
        "files per class (an integer), a fraction of each class in (0, 1] (1.0 is all), or all; "
        "nested across sizes for one seed.")
    # which cross-split duplicates leave the clean test subset (test_clean_* metrics)
    dedup: Literal["none", "exact", "near", "robust"] = Field(
        "near", description="Which cross-split duplicates leave the clean test subset (test_clean_* "
        "metrics); robust: near copies and also cropped, rescaled, slightly rotated or re-encoded "
        "ones (thresholds in copy_match).")
    # near duplicates: at most this many differing bits of the 256-bit perceptual hash
    # (7023 set: JPEG re-encodes move it <= 6 bits, 20% brightening <= 16; unrelated images
    # differ in ~124)
    near_bits: Annotated[int, Field(ge=0, le=256)] = Field(
        16, description="Near duplicates: at most this many differing bits of the 256-bit perceptual "
        "hash.")
    copy_match: CopyMatchConfig = Field(
        default_factory=CopyMatchConfig, description="Thresholds of the robust copy matcher (dedup "
        "robust, split.groups robust).")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="error stops before training and names the files; skip leaves them out and "
        "lists them in data/skipped_files.csv.")
    # labels as written (folder names, manifest values) -> the label to use; folds spellings
    # that differ only in case or spaces (`Glioma`, `glioma `), which are otherwise an error
    label_map: dict[str, Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="Labels as written (folder names, manifest values) -> the label to use; folds "
        "spellings that differ only in case or spaces.")
    # a registered dataset to use instead when this one is not found (the smoke suite names the
    # embedded sample); resolved before cells are expanded, said on the console and in MLflow.
    # Without it a missing dataset is an error: nothing is ever substituted silently.
    fallback: str | None = Field(
        None, description="A registered dataset used instead when this one is not found (said on the "
        "console and logged); without it a missing dataset is an error.")
    split: SplitConfig | None = Field(
        None, description="This dataset's own split (default: the suite's split).")
    external: list[ExternalConfig] = Field(
        default_factory=list, description="Other sets every model trained on this dataset is also "
        "tested on, whole.")
    robustness: RobustnessConfig | None = Field(
        None, description="This dataset's own robustness block (default: the suite's).")

    @field_validator("train_per_class", mode="before")
    @classmethod
    def _size_not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise UserError(f"{str(value).lower()} is not a training size: give N images per "
                             "class (an integer), a fraction in (0, 1], or all")
        if isinstance(value, float) and value == 1.0:
            return "all"  # the whole class: the same cells (run_keys) as `all`
        if isinstance(value, float) and not 0 < value < 1:
            raise UserError(f"{value} is neither N images per class (an integer) nor a "
                             "fraction in (0, 1]")
        return value

    @model_validator(mode="before")
    @classmethod
    def _old_threshold_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "near_threshold" in data:
            raise UserError("near_threshold (bits per 64) was replaced by near_bits, counted in "
                             "bits of the whole 256-bit hash: near_threshold 4 = near_bits 16")
        return data

    @model_validator(mode="after")
    def _known_or_declared(self):
        from mribench.data.registry import KNOWN

        known_or_declared(self)
        if self.fallback is not None and (self.fallback not in KNOWN or self.fallback == self.name):
            raise UserError(f"fallback {self.fallback!r} must be another registered dataset: "
                             f"one of {sorted(set(KNOWN) - {self.name})}")
        keys = [e.key for e in self.external]
        if len(set(keys)) != len(keys):
            raise UserError(f"external sets need distinct aliases, got {keys}")
        return self

class PreprocessConfig(Strict):
    image_size: Annotated[int, Field(ge=8, le=2048)] = Field(
        224, description="Side in pixels every image is resized to.")
    channels: Literal[1, 3] = Field(
        3, description="1 (grayscale) or 3 (RGB); every file is converted to it.")
    interpolation: Literal["area", "bilinear", "bicubic", "nearest"] = Field(
        "bilinear", description="Resampling filter for the resize.")
    # the model's own pretrained statistics (ImageNet mean/std for most, 0.5/0.5 for the
    # TF-ported EfficientNet-Lite), always-ImageNet, or plain [0,1] scaling (Study B)
    # (Study D: the paper applies no normalisation at all: 0-255 as Keras' image loader yields)
    normalize: Literal["model", "imagenet", "unit", "raw"] = Field(
        "model", description="model: the model's own pretrained statistics; imagenet: always ImageNet "
        "mean/std; unit: plain [0, 1] scaling; raw: 0-255 pixel values.")

class AugmentConfig(Strict):
    rotation: Annotated[float, Field(ge=0, le=180)] = Field(0.0, description="Random rotation, +- degrees.")
    hflip: bool = Field(False, description="Random horizontal flips.")
    vflip: bool = Field(False, description="Random vertical flips.")
    brightness: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="Random brightness change, +- this factor.")

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.hflip or self.vflip or self.brightness)

class ModelConfig(Strict):
    name: str = Field(description="A registered model (see the model zoo reference).")
    label: str | None = Field(None, description="Display name, e.g. the paper's.")
    head: HeadConfig = Field(HeadConfig(), description="The classification head on the backbone.")
    weights: str | None = Field(
        None, description="An explicit pretrained weight file (.pth or .safetensors).")
    training: dict[str, Any] = Field(
        default_factory=dict, description="This model's overrides of the suite's training block.")
    preprocess: dict[str, Any] = Field(
        default_factory=dict, description="This model's overrides of the suite's preprocess block, e.g. "
        "image_size.")
    # run this model only with these suite strategies (by label or name); None = all of them
    strategies: list[str] | None = Field(
        None, description="Run this model only with these suite strategies (by label or name); null: "
        "all of them.")
    explain: dict[str, str] = Field(
        default_factory=dict, description="This model's gradcam_layer and layercam_layer.")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from mribench.models import registry

        registry.get(name)  # raises with the list of known models
        return name

    @field_validator("training")
    @classmethod
    def _overrides_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        TrainingConfig(**value)  # same checks as the suite-level block
        return value

    @field_validator("preprocess")
    @classmethod
    def _preprocess_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        PreprocessConfig(**value)
        return value

    @field_validator("explain")
    @classmethod
    def _explain_overrides_valid(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(MODEL_EXPLAIN_KEYS))
        if unknown:
            raise UserError(f"a model may override only {list(MODEL_EXPLAIN_KEYS)} of explain, "
                             f"got {unknown}")
        ExplainConfig(**value)  # same checks as the suite-level block
        return value

    @property
    def display(self) -> str:
        return self.label or self.name


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
