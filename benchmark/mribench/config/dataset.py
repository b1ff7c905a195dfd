"""A dataset of the matrix (`datasets[]`): where its images are, how many train, which
duplicates leave the clean test subset, and its own split, external sets and robustness."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mribench.config.copies import CopyMatchConfig
from mribench.config.external import ExternalConfig, known_or_declared
from mribench.config.robustness import RobustnessConfig
from mribench.config.split import SplitConfig
from mribench.config.types import Hashable, PosInt, StrictPosInt, TrainFraction
from mribench.errors import UserError


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
