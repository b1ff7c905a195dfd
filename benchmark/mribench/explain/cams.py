"""Class-activation maps from pytorch-grad-cam: Grad-CAM and the variants that resolve more.

Grad-CAM weighs a layer's channels by their mean gradient, so its map has the layer's resolution
(EfficientNet's last stage is 4x4 at 128 px: one blob). HiResCAM multiplies gradients and
activations element-wise (faithful to the layer, same resolution); Grad-CAM++ weighs positive
gradients per location; LayerCAM weighs each location by its own positive gradient, which keeps
fine detail on earlier, higher-resolution stages (explain.layercam_layer). Heavy imports inside.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from torch import nn

TITLES = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcampp": "Grad-CAM++",
          "layercam": "LayerCAM"}


def cam_class(method: str):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM

    return {"gradcam": GradCAM, "hirescam": HiResCAM, "gradcampp": GradCAMPlusPlus,
            "layercam": LayerCAM}[method]


@torch.no_grad()
def predict_and_probe(model: nn.Module, layers: list[nn.Module],
                      inputs: torch.Tensor) -> tuple[np.ndarray, list[torch.Tensor]]:
    """Class probabilities, and each layer's output in the same forward pass (checks the layer
    belongs to the model and tells its resolution)."""
    seen: dict[int, torch.Tensor] = {}
    # key=id(layer) binds each hook to its own layer (a default, evaluated per iteration)
    handles = [layer.register_forward_hook(
        lambda m, i, o, key=id(layer): seen.setdefault(key, o)) for layer in layers]  # noqa: B008
    try:
        probs = torch.softmax(model(inputs), dim=1).float().cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
    outs = []
    for layer in layers:
        out = seen.get(id(layer))
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"explain: CAM target layer {type(layer).__name__} did not produce "
                             "a tensor in the model's forward pass (is it a submodule of this "
                             "model?)")
        outs.append(out)
    return probs, outs


def layout_of(layer_out: torch.Tensor, channels_last: bool = False) -> str:
    """"NLC" (transformer tokens [B, T, D]), "NHWC" (timm's Swin stages) or "NCHW"."""
    if layer_out.dim() == 3:
        return "NLC"
    return "NHWC" if channels_last else "NCHW"


def prefix_tokens(model: nn.Module) -> int | None:
    """How many class / register / distillation tokens precede a transformer's patch tokens:
    timm's `num_prefix_tokens` of the first module that has one; None when none does."""
    for module in model.modules():
        count = getattr(module, "num_prefix_tokens", None)
        if isinstance(count, int) and not isinstance(count, bool):
            return count
    return None


def map_side(layer_out: torch.Tensor, layout: str = "NCHW", prefix: int | None = None) -> int:
    """The side of the layer's spatial grid: what a CAM on it can resolve."""
    if layout == "NLC":
        return _grid_side(layer_out.shape[1], prefix)
    return int(layer_out.shape[2] if layout == "NHWC" else layer_out.shape[-1])


def _grid_side(tokens: int, prefix: int | None) -> int:
    # without the model's count, the largest square: right for a class token on a big grid,
    # wrong with several prefix tokens on a small one (1 class + 4 registers + 2x2 patches = 9)
    if prefix is None:
        return math.isqrt(tokens)
    side = math.isqrt(tokens - prefix)
    if side * side != tokens - prefix:
        raise ValueError(f"explain: {tokens} tokens less {prefix} prefix tokens is not a square "
                         "patch grid")
    return side


def _tokens_to_grid(tensor: torch.Tensor, prefix: int | None = None) -> torch.Tensor:
    """Transformer tokens [B, T, D] to a [B, D, S, S] map, dropping the `prefix` class /
    register / distillation tokens in front of the S*S patch tokens (pytorch-grad-cam's ViT
    recipe)."""
    side = _grid_side(tensor.shape[1], prefix)
    grid = tensor[:, tensor.shape[1] - side * side:, :]
    return grid.reshape(tensor.shape[0], side, side, -1).permute(0, 3, 1, 2)


def _channels_first(tensor: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] (Swin) to [B, C, H, W]."""
    return tensor.permute(0, 3, 1, 2)


RESHAPE = {"NLC": _tokens_to_grid, "NHWC": _channels_first, "NCHW": None}


def cam_maps(method: str, model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
             preds, tokens: bool | str) -> np.ndarray:
    """[N, H, W] maps in [0, 1] (each min-max scaled by the library) for the predicted classes.
    tokens: the layer output's layout (layout_of); True / False for tokens / NCHW."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layout = tokens if isinstance(tokens, str) else ("NLC" if tokens else "NCHW")
    reshape = RESHAPE[layout]
    if layout == "NLC":
        reshape = partial(_tokens_to_grid, prefix=prefix_tokens(model))
    # The input requires grad so the layer's output does too when the backbone is frozen.
    x = inputs.detach().clone().requires_grad_(True)
    maps = None
    with torch.enable_grad(), cam_class(method)(model=model, target_layers=[layer],
                                                reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(p)) for p in preds])
    if maps is None or not np.all(np.isfinite(maps)):  # the CAM's __exit__ swallows IndexError
        raise RuntimeError(f"{TITLES[method]} failed on layer {type(layer).__name__}")
    return maps


def cam_overlays(images: list[np.ndarray], maps: np.ndarray) -> list[np.ndarray]:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return [show_cam_on_image(img.astype(np.float32), m, use_rgb=True)
            for img, m in zip(images, maps, strict=True)]
