"""How a dataset is split (`split:`, suite-wide or per dataset): the protocol, the duplicate
groups kept on one side, the fractions, and the images held out as the test split."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mribench.config.strict import Strict
from mribench.config.types import Fraction, Hashable
from mribench.errors import UserError


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
