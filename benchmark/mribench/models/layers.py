"""Which module of a built model an explanation method looks at.

A layer spec (explain.gradcam_layer / layercam_layer, or a model's own override) is one of:
  default    the registry's Grad-CAM layer for the architecture (its last convolutional stage)
  stride:N   the last block, in forward order, whose output keeps at least 1/N of the input side:
             the same request means the same resolution for every architecture (at 128 px,
             stride:16 is an 8x8 map, one stage before EfficientNet's 4x4 last stage)
  a path     a module as the architecture names it ("blocks.4", "layer3", "features.23")
"""
from __future__ import annotations

import difflib

import torch
from torch import nn

from mribench.errors import UserError


def resolve_layer(built, spec: str) -> tuple[str, nn.Module]:
    """(module path inside the architecture, module) for `spec`; ValueError naming the spec."""
    net = built.backbone.net
    if spec == "default":
        name = built.spec.gradcam
    elif spec.startswith("stride:"):
        name = _by_stride(built, int(spec.split(":", 1)[1]))
    else:
        name = spec
    try:
        return name, net.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in net.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        raise UserError(f"explain layer {spec!r}: model {built.spec.name!r} has no module "
                         f"{name!r}; close names: {close or 'none'}; its blocks: "
                         f"{[n for g in built.group_names for n in g]}") from None


def block_sides(built) -> list[tuple[str, int]]:
    """(block name, output side) for each block of the architecture, in forward order, on an
    input of the model's image size."""
    net = built.backbone.net
    names = [n for group in built.group_names for n in group] + [built.spec.gradcam]
    size, chans = int(built.info["model_image_size"]), int(built.info["model_in_chans"])
    seen: list[tuple[str, int]] = []

    def hook(name):
        def record(module, args, out):
            if isinstance(out, torch.Tensor) and out.dim() in (3, 4):
                nhwc = built.spec.layout == "NHWC"  # timm's Swin: [B, H, W, C]
                side = (out.shape[2] if nhwc else out.shape[-1]) if out.dim() == 4 \
                    else int(out.shape[1] ** 0.5)  # tokens: class tokens in front of S*S
                seen.append((name, side))
        return record

    handles = [net.get_submodule(n).register_forward_hook(hook(n))
               for n in dict.fromkeys(names) if n in dict(net.named_modules())]
    modes = {m: m.training for m in built.backbone.modules()}  # restored exactly after the probe
    built.backbone.eval()
    try:
        with torch.no_grad():
            # on the backbone's device: explanations resolve "stride:N" after the model moved
            device = next(built.backbone.parameters()).device
            built.backbone(torch.zeros(1, chans, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
        for module, training in modes.items():
            module.training = training
    return list(dict(seen).items())  # a block run twice keeps its last output


def _by_stride(built, stride: int) -> str:
    size = int(built.info["model_image_size"])
    sides = block_sides(built)
    keep = [name for name, side in sides if side * stride >= size]
    if not keep:
        raise UserError(f"explain layer 'stride:{stride}': no block of {built.spec.name!r} keeps "
                         f"1/{stride} of {size} px; block output sides: {sides}")
    if built.spec.layout == "NLC":
        # a ViT keeps one patch grid through every block: the registry's layer (the last
        # block's norm1) is the last whose patch tokens still reach a class-token classifier
        return built.spec.gradcam
    return keep[-1]
