"""What a model entry builds: its head (`models[].head`) and the transfer strategies (the
choices and their options come from the strategy table, models/strategies.py)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mribench.config.head_layers import HeadType, parse_layers
from mribench.config.types import Hashable, PosInt
from mribench.errors import UserError
from mribench.models import strategies


class HeadConfig(Hashable):  # layers is a list: hashed by content
    # linear: replace the final layer (Study B); gap_mlp: GAP -> Dense(hidden) -> ReLU -> Dense(k)
    # (Study A, Study D with dropout); flatten_mlp: flatten -> dense -> dropout -> batch-norm ->
    # dense (Study C); conv_gap_mlp: conv -> ReLU -> dropout -> GAP -> dense -> ReLU -> dropout ->
    # dense; layers: any list of head layers, then Linear(k) (Study C's fine-tuned VGG16)
    type: HeadType = Field(
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
    # {dropout: 0.3}] (see config/head_layers.py)
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
            parse_layers(value)  # the error names layers[i]
        return value

    @model_validator(mode="after")
    def _keys_fit_the_type(self):
        if (self.type == "layers") != bool(self.layers):
            raise UserError("layers: give a non-empty list exactly when type is layers")
        if self.type == "layers" and self.dropout:
            raise UserError("a layers head takes its dropout as {dropout: p} items in layers")
        if self.keep_dropout and self.type != "linear":
            raise UserError("keep_dropout keeps the library's classifier around a replaced "
                             f"last FC: it needs head type linear, not {self.type!r}")
        if self.keep_dropout and self.dropout:
            raise UserError("give either dropout or keep_dropout for a linear head, not both")
        return self

KNN_DEFAULT_K = strategies.KNN.options["k"]


def _name_schema(schema: dict[str, Any]) -> None:
    """The choices and their description come from the strategy table (models/strategies.py)."""
    schema.update(enum=strategies.names(), description=strategies.description(), type="string")


class StrategyConfig(Hashable):  # lora targets is a list: hashed by content
    name: str = Field(json_schema_extra=_name_schema)
    label: str | None = Field(None, description="Display name, e.g. Study A's tf1.")
    blocks: PosInt = Field(1, description="partial: last N block groups trained.")
    every: PosInt = Field(1, description="gradual: unfreeze one more block group every N epochs.")
    # left out of the dump (so of every run_key) when unset, as it is for all other strategies
    k: PosInt | None = Field(None, exclude_if=lambda v: v is None, description=(
        f"knn: neighbours that vote, by cosine similarity of pooled features (default "
        f"{KNN_DEFAULT_K}); only for knn."))
    # lora and lp_ft keys: unset (so out of every earlier run_key) for every other strategy
    rank: PosInt | None = Field(None, exclude_if=lambda v: v is None, description=(
        f"lora: rank of the adapters (default {strategies.LORA.options['rank']})."))
    alpha: Annotated[float, Field(gt=0)] | None = Field(
        None, exclude_if=lambda v: v is None, description=(
            f"lora: scaling numerator, the update is alpha / rank times B A (default "
            f"{strategies.LORA.options['alpha']})."))
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None, exclude_if=lambda v: v is None, description="lora: dropout on the adapters' input "
        "(default 0).")
    targets: list[str] | None = Field(None, exclude_if=lambda v: v is None, description=(
        "lora: backbone modules to adapt, by name or name suffix (e.g. [qkv, proj]); default: a "
        "ViT's attention qkv and proj Linear layers, else every Conv2d (groups 1) and Linear."))
    probe_epochs: PosInt | None = Field(None, exclude_if=lambda v: v is None, description=(
        f"lp_ft: epochs of the linear-probe stage (default "
        f"{strategies.LP_FT.options['probe_epochs']}); training.epochs then fine-tunes."))
    ft_lr_scale: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, exclude_if=lambda v: v is None, description=(
            f"lp_ft: the fine-tuning stage's learning rates are this times training.lr and "
            f"training.backbone_lr (default {strategies.LP_FT.options['ft_lr_scale']})."))

    batchnorm: Literal["adapt", "pretrained"] | None = Field(
        None, exclude_if=lambda v: v is None, description=(
        "Strategies that train a pretrained backbone: `pretrained` keeps its batch-norm "
        "layers' running statistics from the weights (eval mode; their affine parameters still train where "
        "the strategy trains them); `adapt` (the default) re-estimates them from the training "
        "batches."))

    @field_validator("batchnorm", mode="before")
    @classmethod
    def _adapt_is_the_default(cls, value: Any) -> Any:
        return None if value == "adapt" else value  # one run_key for the default, written or not

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        strategies.get(value)  # raises, listing the registered strategies
        return value

    @model_validator(mode="before")
    @classmethod
    def _options_of_the_strategy(cls, data: Any) -> Any:
        """A strategy-specific key (knn's k, ...) defaults for its strategy and is refused by
        the others (the table's `options`)."""
        if not isinstance(data, dict) or data.get("name") not in strategies.names():
            return data
        own = strategies.get(data["name"]).options
        for key in sorted(strategies.option_keys()):
            if key not in own and data.get(key) is not None:
                owners = [n for n in strategies.names() if key in strategies.get(n).options]
                raise UserError(f"{key} is a parameter of strategy {' / '.join(owners)}, not "
                                 f"of {data['name']!r}")
        return {**data, **{k: v for k, v in own.items() if data.get(k) is None}}

    @property
    def display(self) -> str:
        return self.label or self.name
