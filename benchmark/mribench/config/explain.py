"""The `explain:` block: which explanation methods run, on how many images, and their checks."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mribench.config.strict import Strict
from mribench.config.types import PosInt

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
