"""Typed, strict suite schema.

A suite YAML is validated into a frozen `Suite`. Unknown keys, unknown names, wrong types and
impossible values are errors that name the YAML path of the offending key (e.g.
`models[1].head.hidden`) and what was expected, raised before anything runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mribench.config.external import ExternalConfig, known_or_declared
from mribench.config.published import Deviation, PublishedResult, check_published
from mribench.config.resources import ResourcesConfig
from mribench.config.strict import Strict
from mribench.errors import UserError

# the suites shipped with the package (a link to the repository's suites/ folder, copied into
# the wheel), so a bare suite name works from any directory
SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"  # mribench/suites

PosInt = Annotated[int, Field(gt=0)]
MAX_EXPERIMENT = 500  # characters in an MLflow experiment name
Fraction = Annotated[float, Field(gt=0, lt=1)]


class SuiteError(UserError):
    """A suite file that cannot be used; the message names the file and the key."""


class Hashable(Strict):
    """A frozen block with list or dict fields, used as a cache key: hashed by its content."""

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

class SplitConfig(Strict):
    protocol: Literal["official", "holdout", "kfold"] = "official"
    # duplicate groups that every split keeps on one side (the official train/test folders
    # excepted: the publisher drew those; the clean test subset deals with their leaks)
    groups: Literal["near", "exact", "none"] = "near"
    val_fraction: Fraction = 0.15  # carved from train, stratified
    test_fraction: Fraction = 0.2  # holdout only
    folds: Annotated[int, Field(ge=2)] = 5  # kfold only

class DatasetConfig(Hashable):
    name: str = Field(min_length=1)  # a registered dataset, or a label for a user dataset
    root: str | None = None  # folder of class sub-folders (optionally split sub-folders)
    manifest: str | None = None  # CSV with path,label[,split]
    subset_per_class: PosInt | None = None  # deterministic first-N-per-class-per-split subset
    # which cross-split duplicates leave the clean test subset (test_clean_* metrics)
    dedup: Literal["none", "exact", "near"] = "near"
    # near duplicates: at most this many differing bits of the 256-bit perceptual hash
    # (7023 set: JPEG re-encodes move it <= 6 bits, 20% brightening <= 16; unrelated images
    # differ in ~124)
    near_bits: Annotated[int, Field(ge=0, le=256)] = 16
    on_bad_image: Literal["error", "skip"] = "error"
    # labels as written (folder names, manifest values) -> the label to use; folds spellings
    # that differ only in case or spaces (`Glioma`, `glioma `), which are otherwise an error
    label_map: dict[str, Annotated[str, Field(min_length=1)]] | None = None
    # a registered dataset to use instead when this one is not found (the smoke suite names the
    # embedded sample); resolved before cells are expanded, said on the console and in MLflow.
    # Without it a missing dataset is an error: nothing is ever substituted silently.
    fallback: str | None = None
    split: SplitConfig | None = None  # this dataset's own protocol (default: the suite's split)
    external: list[ExternalConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _old_threshold_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "near_threshold" in data:
            raise ValueError("near_threshold (bits per 64) was replaced by near_bits, counted in "
                             "bits of the whole 256-bit hash: near_threshold 4 = near_bits 16")
        return data

    @model_validator(mode="after")
    def _known_or_declared(self):
        from mribench.data.registry import KNOWN

        known_or_declared(self)
        if self.fallback is not None and (self.fallback not in KNOWN or self.fallback == self.name):
            raise ValueError(f"fallback {self.fallback!r} must be another registered dataset: "
                             f"one of {sorted(set(KNOWN) - {self.name})}")
        keys = [e.key for e in self.external]
        if len(set(keys)) != len(keys):
            raise ValueError(f"external sets need distinct aliases, got {keys}")
        return self

class PreprocessConfig(Strict):
    image_size: Annotated[int, Field(ge=8, le=2048)] = 224
    channels: Literal[1, 3] = 3
    interpolation: Literal["area", "bilinear", "bicubic", "nearest"] = "bilinear"
    # the model's own pretrained statistics (ImageNet mean/std for most, 0.5/0.5 for the
    # TF-ported EfficientNet-Lite), always-ImageNet, or plain [0,1] scaling (Study B)
    # (Study D: the paper applies no normalisation at all: 0-255 as Keras' image loader yields)
    normalize: Literal["model", "imagenet", "unit", "raw"] = "model"

class AugmentConfig(Strict):
    rotation: Annotated[float, Field(ge=0, le=180)] = 0.0  # degrees, +-
    hflip: bool = False
    vflip: bool = False
    brightness: Annotated[float, Field(ge=0, le=1)] = 0.0  # +- factor

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.hflip or self.vflip or self.brightness)

class TrainingConfig(Strict):
    epochs: PosInt = 10
    batch_size: Annotated[int, Field(ge=2)] = 32  # batch-norm cannot train on one image
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0, le=10)] = 1e-3  # head (and everything unless backbone_lr)
    backbone_lr: Annotated[float, Field(gt=0, le=10)] | None = None
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    scheduler: Literal["none", "cosine", "step", "plateau"] = "none"
    step_size: PosInt = 10
    gamma: Fraction = 0.1
    patience: PosInt | None = None  # early stopping on validation loss; None = off
    # Study B's "best accuracy": also evaluate the test split every epoch and log the best value
    # as test_best_epoch_accuracy_peeking. It peeks at the test set, so it is never the headline.
    peek_test: bool = False
    # loader worker processes; auto: one per spare core on CUDA (at most 8), none on CPU
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"
    # auto: bf16 autocast on CUDA devices that support it, fp16 + gradient scaler on older
    # ones, fp32 on CPU. Evaluation upcasts logits to float64; explanations run in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # true: deterministic CUDA kernels, no cuDNN autotuning (bit-identical GPU reruns, slower)
    deterministic: bool = False
    compile: bool = False  # wrap the trained module in torch.compile
    # Divergence: a non-finite loss stops the cell as FAILED at once. A large loss is judged over
    # a window, so a published configuration whose first batches spike and then recover (Study
    # B's VGG16 trained whole with Adam 1e-3: 760 at batch 2) is not stopped: the cell fails when
    # the loss stays above `max_loss` for `max_loss_batches` consecutive batches, or when an
    # epoch's mean loss is above it (null: non-finite only). Cross-entropy starts near
    # ln(classes); 100 means the right class gets a probability below e^-100 on average.
    max_loss: Annotated[float, Field(gt=0)] | None = 100.0
    max_loss_batches: Annotated[int, Field(ge=1)] = 10
    # frozen backbone without augmentation: compute its features once and train the head on
    # them (default). false recomputes the backbone every epoch, as the studies' Keras/PyTorch
    # scripts did, so seconds per epoch compare with theirs (Study B); the results are the same.
    feature_reuse: bool = True

class HeadConfig(Hashable):  # layers is a list: hashed by content
    # linear: replace the final layer (Study B); gap_mlp: GAP -> Dense(hidden) -> ReLU -> Dense(k)
    # (Study A, Study D with dropout); flatten_mlp: flatten -> dense -> dropout -> batch-norm ->
    # dense (Study C); conv_gap_mlp: conv -> ReLU -> dropout -> GAP -> dense -> ReLU -> dropout ->
    # dense; layers: any list of head layers, then Linear(k) (Study C's fine-tuned VGG16)
    type: Literal["linear", "gap_mlp", "flatten_mlp", "conv_gap_mlp", "layers"] = "linear"
    hidden: PosInt = 1024
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    conv_channels: PosInt = 512  # conv_gap_mlp: filters of the extra 3x3 convolution
    conv_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0  # conv_gap_mlp: after the conv
    # type layers: e.g. [gap, batchnorm, {dropout: 0.23}, {dense: 510}, relu, batchnorm,
    # {dropout: 0.3}] (see models/heads.py parse_layers)
    layers: list[str | dict[str, int | float]] = Field(default_factory=list)
    # linear only: keep the dropout the library's own classifier has around the replaced last
    # FC (VGG16 0.5 after fc6 and fc7, GoogLeNet / MobileNetV2 0.2), as Study B did
    keep_dropout: bool = False

    @field_validator("layers")
    @classmethod
    def _layers_valid(cls, value):
        if value:
            from mribench.models.heads import parse_layers

            parse_layers(value)  # the error names layers[i]
        return value

    @model_validator(mode="after")
    def _keys_fit_the_type(self):
        if (self.type == "layers") != bool(self.layers):
            raise ValueError("layers: give a non-empty list exactly when type is layers")
        if self.type == "layers" and self.dropout:
            raise ValueError("a layers head takes its dropout as {dropout: p} items in layers")
        if self.keep_dropout and self.type != "linear":
            raise ValueError("keep_dropout keeps the library's classifier around a replaced "
                             f"last FC: it needs head type linear, not {self.type!r}")
        if self.keep_dropout and self.dropout:
            raise ValueError("give either dropout or keep_dropout for a linear head, not both")
        return self

class StrategyConfig(Strict):
    name: Literal["scratch", "frozen", "full", "partial", "gradual"]
    label: str | None = None  # display name, e.g. Study A's "tf1"
    blocks: PosInt = 1  # partial: last N block groups trained
    every: PosInt = 1  # gradual: unfreeze one more block group every N epochs

    @property
    def display(self) -> str:
        return self.label or self.name

class ModelConfig(Strict):
    name: str
    label: str | None = None
    head: HeadConfig = HeadConfig()
    weights: str | None = None  # explicit pretrained weight file
    training: dict[str, Any] = Field(default_factory=dict)  # per-model overrides of `training`
    preprocess: dict[str, Any] = Field(default_factory=dict)  # per-model overrides, e.g. size
    # run this model only with these suite strategies (by label or name); None = all of them
    strategies: list[str] | None = None
    explain: dict[str, str] = Field(default_factory=dict)  # per-model gradcam/layercam_layer

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
            raise ValueError(f"a model may override only {list(MODEL_EXPLAIN_KEYS)} of explain, "
                             f"got {unknown}")
        ExplainConfig(**value)  # same checks as the suite-level block
        return value

    @property
    def display(self) -> str:
        return self.label or self.name


EXPLAIN_METHODS = ("gradcam", "hirescam", "gradcampp", "layercam", "lime")
# Which module a CAM explains: the registry's per-architecture choice ("default"), the last block
# whose output keeps at least 1/N of the input side ("stride:N", the same idea for every
# architecture), or a module path as the architecture names it ("blocks.4", "layer3").
LayerSpec = Annotated[str, Field(pattern=r"^(default|stride:[1-9][0-9]*|[A-Za-z_][A-Za-z0-9_]*"
                                         r"(\.[A-Za-z0-9_]+)*)$")]
MODEL_EXPLAIN_KEYS = ("gradcam_layer", "layercam_layer")  # what a model may override


class ExplainConfig(Strict):
    # CAM family from pytorch-grad-cam (gradcampp = Grad-CAM++) and LIME
    methods: list[Literal[EXPLAIN_METHODS]] = Field(default_factory=list)
    per_class: PosInt = 1  # test images per class, picked by file identity: the same in every cell
    lime_samples: PosInt = 200
    lime_features: PosInt = 10  # top-k superpixels
    lime_segments: PosInt = 64  # SLIC superpixels asked for inside the brain mask
    # what a hidden superpixel becomes: the scan's own background value (median outside the
    # brain mask), or a blurred copy of the image
    lime_hide: Literal["background", "blur"] = "background"
    gradcam_layer: LayerSpec = "default"  # for gradcam, hirescam, gradcampp
    layercam_layer: LayerSpec = "stride:8"  # LayerCAM is made for earlier, finer stages
    faithfulness: bool = True
    # model-randomisation check (Adebayo et al. 2018): every method again on a copy of the model
    # with re-initialised weights, all at once (full) or block by block from the top (cascading)
    randomisation: Literal["none", "full", "cascading"] = "full"
    # flags: maps that keep this rank correlation after randomisation; less heat than this
    # fraction inside the brain mask
    max_random_spearman: Annotated[float, Field(ge=0, le=1)] = 0.5
    min_in_mask: Annotated[float, Field(ge=0, le=1)] = 0.8
    seed: int = 0

class Suite(Strict):
    # the default experiment, 'benchmark-<name>', must fit MLflow's bound too
    name: str = Field(min_length=1, max_length=MAX_EXPERIMENT - len("benchmark-"))
    description: str = ""
    # MLflow refuses experiment names over 500 characters; bounded here so it fails up front
    experiment: Annotated[str, Field(min_length=1, max_length=MAX_EXPERIMENT)] | None = None
    datasets: list[DatasetConfig] = Field(min_length=1)
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    augment: AugmentConfig = AugmentConfig()
    training: TrainingConfig = TrainingConfig()
    models: list[ModelConfig] = Field(min_length=1)
    strategies: list[StrategyConfig] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    explain: ExplainConfig = ExplainConfig()
    published: list[PublishedResult] = Field(default_factory=list)
    # how the suite departs from the paper its published figures come from; required (an empty
    # list when there is none) whenever `published` is given
    deviations: list[Deviation] | None = None
    resources: ResourcesConfig = ResourcesConfig()  # per cell, for --executor ray

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
                raise ValueError(f"models[{i}].strategies names {unknown}, which the suite's "
                                 f"strategies do not declare (declared: {sorted(declared)})")
        return self

    @model_validator(mode="after")
    def _published_refers_to_cells(self):
        models = {m.display for m in self.models} | {m.name for m in self.models}
        strategies = {s.display for s in self.strategies} | {s.name for s in self.strategies}
        for i, p in enumerate(self.published):
            if p.model not in models or p.strategy not in strategies:
                raise ValueError(f"published[{i}] names model {p.model!r} / strategy "
                                 f"{p.strategy!r}; the suite declares models {sorted(models)} "
                                 f"and strategies {sorted(strategies)}")
        protocols = sorted({(ds.split or self.split).protocol for ds in self.datasets})
        check_published(self.published, self.deviations, protocols)
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
