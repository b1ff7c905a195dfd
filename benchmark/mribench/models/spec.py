"""What a model registry entry is (ModelSpec), and which names timm describes instead of an entry.

models/registry.py holds the entries by name; models/timm_specs.py derives entries from timm.
Both build ModelSpecs, so it lives here, where neither has to import the other for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "timm" | "torchvision" | "local"
    arch: str  # the name inside that source
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    notes: str = ""
    extra: dict = field(default_factory=dict)
    # Block groups, input to output; each a tuple of module names. `partial` trains the last N.
    groups: tuple[tuple[str, ...], ...] = ()
    gradcam: str = ""  # module whose output Grad-CAM explains (the last convolutional stage)
    min_size: int = 32  # smallest input side the architecture accepts
    # Module holding trainable layers between the feature map and the final layer (VGG's fc6/fc7).
    # A `linear` head ("replace the final layer") keeps them in the backbone; other heads drop them.
    pre_logits: str | None = None
    hub: str | None = None  # timm "arch.tag" or torchvision "Weights_Enum.MEMBER"
    pip: str | None = None  # importable package that ships an ImageNet weight file
    map_keys_by_order: bool = False  # file uses another key naming with identical order/shapes
    ignore_keys: tuple[str, ...] = ()  # key prefixes in published files that are not used (aux heads)
    # Dropout rates of the architecture's own ImageNet classifier as torchvision defines it, input
    # to output: the last acts right before the final FC, earlier ones inside `pre_logits` (VGG:
    # after fc6 and after fc7). A `linear` head with keep_dropout ("replace only the last FC", as
    # Study B did) keeps them; every other head builds its own classifier and ignores them.
    classifier_dropout: tuple[float, ...] = ()
    # Entries derived from timm (models/timm_specs.py): the trunk ends with the architecture's
    # own pooling and pre-logits norm (a ViT's class token, ConvNeXt's head norm), so every head
    # sees the vector its ImageNet classifier read.
    pooled_features: bool = False
    # built for one input size (position embeddings: ViT, DeiT, Swin): another image size
    # re-creates it at that size (timm's img_size=) and resamples pretrained embeddings
    fixed_size: bool = False
    layout: str = "NCHW"  # the Grad-CAM layer's output: "NCHW", "NHWC" (Swin) or "NLC" (tokens)

    @property
    def pretrained_available(self) -> bool:
        return bool(self.hub or self.pip)


TIMM_PREFIX = "timm:"  # `timm:<any timm model name>[.<pretrained tag>]`, metadata derived
# Modern backbones: registered by name, their metadata derived from timm like any `timm:` name
# (models/timm_specs.py); the value is the timm name with the pretrained tag whose weights load.
TIMM_FAMILIES = {
    "vit_small_patch16_224": "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "deit_small_patch16_224": "deit_small_patch16_224.fb_in1k",
    "swin_tiny_patch4_window7_224": "swin_tiny_patch4_window7_224.ms_in1k",
    "convnext_tiny": "convnext_tiny.in12k_ft_in1k",
    "vit_small_patch14_dinov2": "vit_small_patch14_dinov2.lvd142m",
}
