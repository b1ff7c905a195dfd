"""Schema of an external test set (`datasets[].external` in a suite); see external.py."""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mribench.config.strict import Strict
from mribench.errors import UserError


def known_or_declared(ds) -> None:
    """A dataset is registered by name, or declared by a folder or a manifest."""
    from mribench.config.problems import did_you_mean
    from mribench.data.registry import KNOWN

    if ds.name not in KNOWN and not (ds.root or ds.manifest):
        raise UserError(
            f"unknown dataset {ds.name!r}: use one of {sorted(KNOWN)} "
            "or declare a user dataset with 'root' (class folders) or 'manifest' (CSV)"
            + did_you_mean(ds.name, KNOWN))


class ExternalConfig(Strict):
    """A set from another source that every model trained on the enclosing dataset is also
    tested on, whole (all its files, any official split ignored), with the cell's preprocessing.
    Its images that duplicate (exactly or nearly) a training or validation image are counted and
    left out of the external_clean_<alias>_* metrics."""

    name: str = Field(
        min_length=1, description="A registered dataset, or a label for a user dataset declared with "
        "root or manifest.")
    alias: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] | None = Field(
        None, description="Name inside the metric keys: external_<alias>_accuracy.")
    root: str | None = Field(None, description="Folder of class sub-folders (a user dataset).")
    manifest: str | None = Field(
        None, description="CSV file with columns path,label[,split] (a user dataset).")
    subset_per_class: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Deterministic subset: the first N files per class.")
    near_bits: Annotated[int, Field(ge=0, le=256)] = Field(
        16, description="Near copies of training or validation images: at most this many of 256 hash "
        "bits differ.")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="error stops before training; skip leaves bad files out and lists them.")
    # the external set's labels (canonical, or the publisher's folder names) -> evaluation label
    label_map: dict[str, str] = Field(
        default_factory=dict, description="The external set's labels (canonical, or the publisher's "
        "folder names) -> evaluation label.")
    # the model's classes -> evaluation label: several classes may fold into one (their
    # probabilities add up), e.g. glioma/meningioma/pituitary -> yes, notumor -> no
    prediction_map: dict[str, str] = Field(
        default_factory=dict, description="The model's classes -> evaluation label; several classes may "
        "fold into one (their probabilities add up).")

    def __hash__(self) -> int:  # a cache key: hashed by content (the maps are dicts)
        return hash(self.model_dump_json())

    @model_validator(mode="after")
    def _declared(self):
        known_or_declared(self)
        return self

    @property
    def key(self) -> str:
        """The name inside metric keys: external_<key>_accuracy."""
        return self.alias or re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)
