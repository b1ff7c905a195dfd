"""Create an architecture's network and cut it into a feature trunk (the backbone).

The full ImageNet-shaped network (1000 classes, RGB) is created first so that a weight file loads
into it strictly, key for key; only then is the classifier cut off and the first convolution
adapted to the requested number of input channels.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from mribench.errors import UserError
from mribench.models.spec import ModelSpec


def create_network(spec: ModelSpec, pretrained: bool = False,
                   image_size: int | None = None) -> nn.Module:
    """The architecture as its library defines it, randomly initialised. `pretrained` only sets
    what the library itself changes for its published weights (GoogLeNet's input transform).
    image_size: a fixed-size architecture (ViT, Swin) is created for this size (timm_kwargs)."""
    if spec.source == "timm":
        import timm

        return timm.create_model(spec.arch, pretrained=False, **timm_kwargs(spec, image_size))
    if spec.source == "torchvision":
        import torchvision.models as tvm

        if spec.arch == "googlenet":
            # aux classifiers only matter for GoogLeNet's own training recipe; torchvision turns
            # transform_input on with its weights (they were ported from TensorFlow)
            return tvm.googlenet(weights=None, aux_logits=False, transform_input=pretrained,
                                 init_weights=True)
        return getattr(tvm, spec.arch)(weights=None)
    if spec.source == "local" and spec.arch == "small_cnn":
        return small_cnn()
    raise ValueError(f"model {spec.name!r}: unknown source/arch {spec.source}/{spec.arch}")


def timm_kwargs(spec: ModelSpec, image_size: int | None) -> dict:
    """Creation arguments for another input size: a fixed-size architecture (position
    embeddings, Swin's windows) is built at `img_size`; pretrained weights are then resampled to
    it by timm's own checkpoint filter (weights.load_into). Others need nothing."""
    if spec.fixed_size and image_size and image_size != spec.input_size:
        return {"img_size": image_size}
    return {}


class ImageSizeError(UserError):
    """An image size a model cannot cut into whole patches."""


def check_patch_multiple(spec: ModelSpec, image_size: int) -> None:
    """A patch-embedding model (ViT, DeiT, DINOv2, Swin) at a size that is not a multiple of
    its patch: a strict one silently drops the last pixels, one built with dynamic_img_size
    stops with an AssertionError at its first batch. Refused before anything trains."""
    patch = spec.extra.get("patch_size")
    if patch and image_size % patch:
        lower, upper = image_size // patch * patch, (image_size // patch + 1) * patch
        raise ImageSizeError(
            f"preprocess.image_size {image_size} is not a multiple of model {spec.name}'s "
            f"patch size {patch}: use e.g. {lower or upper} or {upper}")


def size_handling(spec: ModelSpec, image_size: int) -> str:
    """What a model does with the run's image size, in words (logged as a tag)."""
    patch = spec.extra.get("patch_size")
    grid = f", {image_size // patch}x{image_size // patch} patches of {patch} px" if patch else ""
    if image_size == spec.input_size:
        return f"native {image_size} px{grid}"
    if spec.fixed_size:
        return (f"created at img_size={image_size} (timm; native {spec.input_size} px): "
                f"position embeddings sized for it{grid}")
    return f"{image_size} px, no change needed (no fixed input size; native {spec.input_size})"


def small_cnn(in_chans: int = 3, widths: tuple[int, ...] = (32, 64, 128)) -> nn.Sequential:
    """Study C's 2D-CNN trunk: three blocks of Conv -> BatchNorm -> ReLU -> MaxPool -> Dropout(0.1)."""
    blocks, ch = OrderedDict(), in_chans
    for i, width in enumerate(widths, 1):
        blocks[f"block{i}"] = nn.Sequential(
            nn.Conv2d(ch, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Dropout(0.1))
        ch = width
    return nn.Sequential(blocks)


# torchvision children that belong to the classifier (everything before them is the trunk)
_TV_CLASSIFIER = {"googlenet": ("avgpool", "dropout", "fc", "aux1", "aux2"),
                  "shufflenet_v2_x1_0": ("fc",)}


class Trunk(nn.Module):
    """image -> features. `net` keeps the library's module names, so groups and the Grad-CAM
    layer resolve as `trunk.net.get_submodule(name)`. Output: a feature map [B, C, H, W], or
    pooled pre-logits [B, F] when `pooled` (VGG with a linear head keeps fc6/fc7)."""

    def __init__(self, net: nn.Module, spec: ModelSpec, pooled: bool):
        super().__init__()
        self.net, self.pooled, self._timm = net, pooled, spec.source == "timm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._timm:
            return self.net(x)
        x = self.net.forward_features(x)
        return self.net.forward_head(x, pre_logits=True) if self.pooled else x


def make_trunk(net: nn.Module, spec: ModelSpec, pooled: bool, in_chans: int,
               keep_dropout: bool = False) -> Trunk:
    """Cut the classifier off `net` (in place) and adapt its first convolution to `in_chans`.

    keep_dropout (with `pooled`, a linear head that replaces only the last FC): the layers kept
    from the library's classifier (VGG's fc6/fc7 in `pre_logits`) keep the dropout torchvision
    gives them (`spec.classifier_dropout` without its last rate, which the head applies)."""
    if spec.source == "timm" and spec.pooled_features:
        net.reset_classifier(0)  # keeps the architecture's own pooling (class token, avg)
    elif spec.source == "timm":
        net.reset_classifier(0, "avg" if pooled else "")
        if spec.pre_logits and not pooled:
            setattr(net, spec.pre_logits, nn.Identity())  # unused: keep it out of the counts
        elif spec.pre_logits and keep_dropout:
            set_dropout(net.get_submodule(spec.pre_logits), spec.classifier_dropout[:-1], spec.name)
    elif spec.source == "torchvision":
        drop = _TV_CLASSIFIER[spec.arch]
        layers = OrderedDict((n, m) for n, m in net.named_children() if n not in drop)
        if getattr(net, "transform_input", False) and in_chans == 3:
            layers = OrderedDict([("transform_input", GoogLeNetInput()), *layers.items()])
        net = nn.Sequential(layers)
    if in_chans != 3:
        _adapt_first_conv(net, in_chans, spec.name)
    return Trunk(net, spec, pooled)


class Params(nn.Module):
    """Parameters held directly by a module that spans block groups (a ViT's cls_token and
    pos_embed on the root), as one group member: requires_grad_ and parameters() act on them.
    Never attached to the model, so its state dict keys do not change."""

    def __init__(self, name: str, param: nn.Parameter):
        super().__init__()
        self.name = name
        self.register_parameter(name.replace(".", "_"), param)


def group_member(net: nn.Module, name: str) -> nn.Module:
    """The module a block-group member names, or its parameter wrapped in `Params`."""
    try:
        return net.get_submodule(name)
    except AttributeError:
        try:
            return Params(name, net.get_parameter(name))
        except AttributeError:
            raise AttributeError(f"no module or parameter {name!r}") from None


def set_dropout(module: nn.Module, rates: tuple[float, ...], name: str) -> None:
    """Give the dropout layers inside `module`, in forward order, these rates (timm builds VGG's
    fc6/fc7 with one dropout at 0; torchvision's VGG16 has 0.5 after fc6)."""
    found = [m for m in module.modules() if isinstance(m, nn.Dropout)]
    if len(found) != len(rates):
        raise UserError(f"model {name!r}: {len(rates)} classifier dropout rates {rates} for "
                         f"{len(found)} dropout layers kept from its classifier")
    for layer, rate in zip(found, rates):
        layer.p = float(rate)


def make_input_conv(in_chans: int, out_chans: int = 3, kernel: int = 3,
                    activation: str = "none") -> nn.Sequential:
    """A new, trainable convolution in front of the backbone with 'same' padding: Study C's
    fine-tuned VGG16 puts Conv2D(3x3, padding='same') before the VGG16 base. Keras' Conv2D has
    no activation unless one is named. out_chans is what the backbone's first layer takes."""
    if kernel % 2 == 0:
        raise UserError(f"input convolution: 'same' padding needs an odd kernel, got {kernel}")
    if activation not in ("none", "relu"):
        raise UserError(f"input convolution: activation {activation!r}; use none or relu")
    layers = [nn.Conv2d(in_chans, out_chans, kernel, padding=kernel // 2)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if activation == "relu" else []))


class GoogLeNetInput(nn.Module):
    """torchvision GoogLeNet's `_transform_input`: ImageNet-normalised RGB -> the (x-0.5)/0.5
    scaling its TensorFlow-ported weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5


def _adapt_first_conv(net: nn.Module, in_chans: int, name: str) -> None:
    from timm.models import adapt_input_conv

    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != 3:
        raise UserError(f"model {name!r}: cannot find an RGB first convolution to adapt")
    # grayscale: sum the RGB filters (timm's rule), so pretrained filters keep their response
    conv.weight = nn.Parameter(adapt_input_conv(in_chans, conv.weight.detach()))
    conv.in_channels = in_chans
