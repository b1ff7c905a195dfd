"""Class-activation maps from pytorch-grad-cam: Grad-CAM and the variants that resolve more.

Grad-CAM weighs a layer's channels by their mean gradient, so its map has the layer's resolution
(EfficientNet's last stage is 4x4 at 128 px: one blob). HiResCAM multiplies gradients and
activations element-wise (faithful to the layer, same resolution); Grad-CAM++ weighs positive
gradients per location; LayerCAM weighs each location by its own positive gradient, which keeps
fine detail on earlier, higher-resolution stages (explain.layercam_layer). Heavy imports inside.
"""
from __future__ import annotations

import math

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


def map_side(layer_out: torch.Tensor) -> int:
    """The side of the layer's spatial grid: what a CAM on it can resolve."""
    return int(layer_out.shape[-1]) if layer_out.dim() == 4 else math.isqrt(layer_out.shape[1])


def _tokens_to_grid(tensor: torch.Tensor) -> torch.Tensor:
    """Transformer tokens [B, T, D] to a [B, D, S, S] map, dropping class/register tokens."""
    side = math.isqrt(tensor.shape[1])
    grid = tensor[:, tensor.shape[1] - side * side:, :]
    return grid.reshape(tensor.shape[0], side, side, -1).permute(0, 3, 1, 2)


def cam_maps(method: str, model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
             preds, tokens: bool) -> np.ndarray:
    """[N, H, W] maps in [0, 1] (each min-max scaled by the library) for the predicted classes."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    reshape = _tokens_to_grid if tokens else None
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
