"""A model of the matrix (`models[]`): the registered name, its head, weights, and its own
overrides of the suite's training, preprocess and explain blocks."""
from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from mribench.config.explain import MODEL_EXPLAIN_KEYS, ExplainConfig
from mribench.config.images import PreprocessConfig
from mribench.config.network import HeadConfig
from mribench.config.strict import Strict
from mribench.config.training import TrainingConfig
from mribench.errors import UserError


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
