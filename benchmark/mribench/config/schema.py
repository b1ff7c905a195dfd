"""Typed, strict suite schema.

A suite YAML is validated into a frozen `Suite`. Unknown keys, unknown names, wrong types and
impossible values are errors that name the YAML path of the offending key (e.g.
`models[1].head.hidden`) and what was expected, raised before anything runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from mribench.config.artifacts import ArtifactsConfig
from mribench.config.axis import Axis, check_only, parse_axes
from mribench.config.axis import base_valid as axis_base_valid
from mribench.config.axis import check as check_axes
from mribench.config.external import ExternalConfig, known_or_declared
from mribench.config.published import Deviation, PublishedResult, check_published
from mribench.config.resources import ResourcesConfig
from mribench.config.robustness import RobustnessConfig, check_reference
from mribench.config.strict import Strict
from mribench.errors import UserError

# the suites shipped with the package (a link to the repository's suites/ folder, copied into
# the wheel), so a bare suite name works from any directory
SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"  # mribench/suites

PosInt = Annotated[int, Field(gt=0)]
StrictPosInt = Annotated[StrictInt, Field(gt=0)]
MAX_EXPERIMENT = 500  # characters in an MLflow experiment name
Fraction = Annotated[float, Field(gt=0, lt=1)]
TrainFraction = Annotated[float, Field(gt=0, le=1)]  # 1.0: the whole class (read as `all`)


class SuiteError(UserError):
    """A suite file that cannot be used; the message names the file and the key."""


class Hashable(Strict):
    """A frozen block with list or dict fields, used as a cache key: hashed by its content."""

    def __hash__(self) -> int:
        return hash(self.model_dump_json())

class SplitConfig(Strict):
    protocol: Literal["official", "holdout", "kfold"] = Field(
        "official", description="official: the publisher's Training/Testing folders, validation carved "
        "from Training; holdout: everything pooled, stratified train/val/test; kfold: stratified k "
        "folds, each fold a cell.")
    # duplicate groups that every split keeps on one side (the official train/test folders
    # excepted: the publisher drew those; the clean test subset deals with their leaks)
    groups: Literal["near", "exact", "none"] = Field(
        "near", description="Duplicate groups that every split keeps on one side, so a copy of a "
        "training image is never a test image of a split drawn here (the publisher's official folders "
        "excepted).")
    val_fraction: Fraction = Field(
        0.15, description="Share of the training side carved out for validation, stratified, whole "
        "duplicate groups.")
    test_fraction: Fraction = Field(
        0.2, description="holdout only: share of the pooled images held out for testing.")
    folds: Annotated[int, Field(ge=2)] = Field(
        5, description="kfold only: number of stratified group folds.")

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
    dedup: Literal["none", "exact", "near"] = Field(
        "near", description="Which cross-split duplicates leave the clean test subset (test_clean_* "
        "metrics).")
    # near duplicates: at most this many differing bits of the 256-bit perceptual hash
    # (7023 set: JPEG re-encodes move it <= 6 bits, 20% brightening <= 16; unrelated images
    # differ in ~124)
    near_bits: Annotated[int, Field(ge=0, le=256)] = Field(
        16, description="Near duplicates: at most this many differing bits of the 256-bit perceptual "
        "hash.")
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
            raise ValueError(f"{str(value).lower()} is not a training size: give N images per "
                             "class (an integer), a fraction in (0, 1], or all")
        if isinstance(value, float) and value == 1.0:
            return "all"  # the whole class: the same cells (run_keys) as `all`
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError(f"{value} is neither N images per class (an integer) nor a "
                             "fraction in (0, 1]")
        return value

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

class TrainingConfig(Strict):
    epochs: PosInt = Field(10, description="Maximum number of training epochs.")
    batch_size: Annotated[int, Field(ge=2)] = Field(
        32, description="Training batch size (at least 2: batch-norm cannot train on one image).")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimizer.")
    lr: Annotated[float, Field(gt=0, le=10)] = Field(
        1e-3, description="Learning rate of the head (and of everything unless backbone_lr is given).")
    backbone_lr: Annotated[float, Field(gt=0, le=10)] | None = Field(
        None, description="Learning rate of the backbone; null: the same as lr.")
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="Layer-wise learning-rate decay over the model's block groups: the top "
        "group trains at the backbone's rate (backbone_lr, else lr), each group below it at "
        "layer_decay times the rate of the one above; the head at lr. null: one backbone rate.")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="Weight decay.")
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(0.9, description="sgd only: momentum.")
    scheduler: Literal["none", "cosine", "step", "plateau"] = Field(
        "none", description="Learning-rate schedule.")
    step_size: PosInt = Field(10, description="step only: epochs between learning-rate drops.")
    gamma: Fraction = Field(0.1, description="step and plateau: factor of each learning-rate drop.")
    patience: PosInt | None = Field(
        None, description="Early stopping on validation loss after this many epochs without "
        "improvement; null: off.")
    # Study B's "best accuracy": also evaluate the test split every epoch and log the best value
    # as test_best_epoch_accuracy_peeking. It peeks at the test set, so it is never the headline.
    peek_test: bool = Field(
        False, description="Also evaluate the test split every epoch and log the best value as "
        "test_best_epoch_accuracy_peeking (Study B's 'best accuracy'); never the headline.")
    # loader worker processes; auto: one per spare core on CUDA (at most 8), none on CPU
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="Loader worker processes; auto: one per spare core on CUDA (at most 8), "
        "none on CPU.")
    # auto: bf16 autocast on CUDA devices that support it, fp16 + gradient scaler on older
    # ones, fp32 on CPU. Evaluation upcasts logits to float64; explanations run in fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA devices that support it, fp16 with a gradient "
        "scaler on older ones, fp32 on CPU.")
    # true: deterministic CUDA kernels, no cuDNN autotuning (bit-identical GPU reruns, slower)
    deterministic: bool = Field(
        False, description="Deterministic CUDA kernels, no cuDNN autotuning: bit-identical GPU reruns, "
        "slower.")
    compile: bool = Field(False, description="Wrap the trained module in torch.compile.")
    # Divergence: a non-finite loss stops the cell as FAILED at once. A large loss is judged over
    # a window, so a published configuration whose first batches spike and then recover (Study
    # B's VGG16 trained whole with Adam 1e-3: 760 at batch 2) is not stopped: the cell fails when
    # the loss stays above `max_loss` for `max_loss_batches` consecutive batches, or when an
    # epoch's mean loss is above it (null: non-finite only). Cross-entropy starts near
    # ln(classes); 100 means the right class gets a probability below e^-100 on average.
    max_loss: Annotated[float, Field(gt=0)] | None = Field(
        100.0, description="A cell fails as diverged when the batch loss stays above this for "
        "max_loss_batches consecutive batches or an epoch's mean is above it; null: only a non-finite "
        "loss stops it.")
    max_loss_batches: Annotated[int, Field(ge=1)] = Field(
        10, description="Consecutive batches above max_loss that stop a cell.")
    # frozen backbone without augmentation: compute its features once and train the head on
    # them (default). false recomputes the backbone every epoch, as the studies' Keras/PyTorch
    # scripts did, so seconds per epoch compare with theirs (Study B); the results are the same.
    feature_reuse: bool = Field(
        True, description="Frozen backbone without augmentation: compute its features once and train "
        "the head on them; false recomputes the backbone every epoch, as the studies' scripts did.")
    checkpoint_every: Annotated[int, Field(ge=0)] = Field(
        1, description="Epochs between checkpoints of the training state, from which a killed cell "
        "resumes (SIGTERM also writes one); 0: none.")

class HeadConfig(Hashable):  # layers is a list: hashed by content
    # linear: replace the final layer (Study B); gap_mlp: GAP -> Dense(hidden) -> ReLU -> Dense(k)
    # (Study A, Study D with dropout); flatten_mlp: flatten -> dense -> dropout -> batch-norm ->
    # dense (Study C); conv_gap_mlp: conv -> ReLU -> dropout -> GAP -> dense -> ReLU -> dropout ->
    # dense; layers: any list of head layers, then Linear(k) (Study C's fine-tuned VGG16)
    type: Literal["linear", "gap_mlp", "flatten_mlp", "conv_gap_mlp", "layers"] = Field(
        "linear", description="linear: replace the final layer; gap_mlp: GAP -> Dense(hidden) -> ReLU "
        "-> [dropout ->] Dense(k); flatten_mlp: flatten -> dense -> dropout -> batch-norm -> dense; "
        "conv_gap_mlp: 3x3 conv -> ReLU -> dropout -> GAP -> dense -> ReLU -> dropout -> dense; layers: "
        "the list in layers, then Dense(k).")
    hidden: PosInt = Field(1024, description="Hidden units of an MLP head.")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.0, description="Dropout rate of the head.")
    conv_channels: PosInt = Field(512, description="conv_gap_mlp: filters of the extra 3x3 convolution.")
    conv_dropout: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="conv_gap_mlp: dropout after the convolution.")
    # type layers: e.g. [gap, batchnorm, {dropout: 0.23}, {dense: 510}, relu, batchnorm,
    # {dropout: 0.3}] (see models/heads.py parse_layers)
    layers: list[str | dict[str, int | float]] = Field(
        default_factory=list, description="type layers: head layers in order, e.g. [gap, batchnorm, "
        "{dropout: 0.23}, {dense: 510}, relu].")
    # linear only: keep the dropout the library's own classifier has around the replaced last
    # FC (VGG16 0.5 after fc6 and fc7, GoogLeNet / MobileNetV2 0.2), as Study B did
    keep_dropout: bool = Field(
        False, description="linear only: keep the dropout the library's own classifier has around the "
        "replaced last layer (VGG16 0.5, GoogLeNet and MobileNetV2 0.2).")

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

KNN_DEFAULT_K = 20


class StrategyConfig(Strict):
    name: Literal["scratch", "frozen", "full", "partial", "gradual", "linear_probe", "knn"] = Field(
        description="scratch: random init; frozen: pretrained backbone frozen, batch-norm statistics "
        "included; full: everything fine-tuned; partial: the last `blocks` block groups trained; "
        "gradual: one more block group unfrozen every `every` epochs. Evaluation protocols on the "
        "frozen pretrained backbone's pooled features: linear_probe (one Linear layer, whatever "
        "the model's head) and knn (cosine k-nearest neighbours, no training).")
    label: str | None = Field(None, description="Display name, e.g. Study A's tf1.")
    blocks: PosInt = Field(1, description="partial: last N block groups trained.")
    every: PosInt = Field(1, description="gradual: unfreeze one more block group every N epochs.")
    # left out of the dump (so of every run_key) when unset, as it is for all other strategies
    k: PosInt | None = Field(None, exclude_if=lambda v: v is None, description=(
        f"knn: neighbours that vote, by cosine similarity of pooled features (default "
        f"{KNN_DEFAULT_K}); only for knn."))

    @model_validator(mode="before")
    @classmethod
    def _k_for_knn(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") == "knn" and data.get("k") is None:
            return {**data, "k": KNN_DEFAULT_K}
        if isinstance(data, dict) and data.get("k") is not None and data.get("name") != "knn":
            raise ValueError(f"k (neighbours) is a parameter of strategy knn, not of "
                             f"{data.get('name')!r}")
        return data

    @property
    def display(self) -> str:
        return self.label or self.name

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
    methods: list[Literal[EXPLAIN_METHODS]] = Field(
        default_factory=list, description="Explanation methods: the CAM family of pytorch-grad-cam "
        "(gradcampp = Grad-CAM++) and LIME.")
    per_class: PosInt = Field(
        1, description="Test images explained per class, picked by file identity: the same in every "
        "cell.")
    lime_samples: PosInt = Field(200, description="LIME: perturbed samples per image.")
    lime_features: PosInt = Field(10, description="LIME: top-k superpixels shown.")
    lime_segments: PosInt = Field(64, description="LIME: SLIC superpixels asked for inside the brain mask.")
    # what a hidden superpixel becomes: the scan's own background value (median outside the
    # brain mask), or a blurred copy of the image
    lime_hide: Literal["background", "blur"] = Field(
        "background", description="LIME: what a hidden superpixel becomes: the scan's own background "
        "value (median outside the brain mask) or a blurred copy of the image.")
    gradcam_layer: LayerSpec = Field(
        "default", description="Layer of gradcam, hirescam and gradcampp: default (the registry's), "
        "stride:N (the last block keeping at least 1/N of the input side) or a module path.")
    layercam_layer: LayerSpec = Field("stride:8", description="Layer of layercam, as gradcam_layer.")
    faithfulness: bool = Field(True, description="Log deletion / insertion AUC and ROAD per method.")
    # model-randomisation check (Adebayo et al. 2018): every method again on a copy of the model
    # with re-initialised weights, all at once (full) or block by block from the top (cascading)
    randomisation: Literal["none", "full", "cascading"] = Field(
        "full", description="Model-randomisation check: every method again on a copy of the model with "
        "re-initialised weights, all at once (full) or block by block from the top (cascading).")
    # flags: maps that keep this rank correlation after randomisation; less heat than this
    # fraction inside the brain mask
    max_random_spearman: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="Flag a method whose maps keep this rank correlation after randomisation.")
    min_in_mask: Annotated[float, Field(ge=0, le=1)] = Field(
        0.8, description="Flag a cell whose maps put less than this fraction of their heat inside the "
        "brain mask.")
    seed: int = Field(0, description="Seed of the choice of explained images.")

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
