"""The images an explanation starts from: raw uint8 pixels and the model's normalised inputs.

Explanations paint on the raw pixels and perturb them (LIME, deletion), then feed the model
through exactly the caller's preprocessing, recovered here from the pair.
"""
from __future__ import annotations

import numpy as np
import torch


def as_float_images(raw: list[np.ndarray], inputs: torch.Tensor) -> list[np.ndarray]:
    """raw uint8 [H, W(, C)] to float RGB [H, W, 3] in [0, 1], checked against inputs."""
    if inputs.dim() != 4 or len(raw) != inputs.shape[0] or not len(raw):
        raise ValueError(f"explain: {len(raw)} raw images for inputs of shape "
                         f"{tuple(inputs.shape)}")
    out = []
    for i, img in enumerate(raw):
        img = np.asarray(img)
        img = img[..., None] if img.ndim == 2 else img
        size = tuple(inputs.shape[-2:])
        if img.dtype != np.uint8 or img.shape[:2] != size or img.shape[2] not in (1, 3):
            raise ValueError(f"explain: raw image {i} must be uint8 [H, W, 1|3] with H, W = "
                             f"{size}, got {img.dtype} {img.shape}")
        out.append(np.repeat(img, 3, axis=2).astype(np.float64) / 255 if img.shape[2] == 1
                   else img.astype(np.float64) / 255)
    return out


def affine_from(raw: list[np.ndarray], inputs: torch.Tensor):
    """Recover the per-channel normalisation inputs = a * raw + b (raw in 0..255) by least squares,
    so LIME's perturbed images and deleted pixels go through exactly the caller's preprocessing."""
    x = np.stack([np.asarray(r).reshape(*r.shape[:2], -1) for r in raw]).astype(np.float64)
    y = inputs.detach().cpu().double().numpy()
    a, b = np.empty(y.shape[1]), np.empty(y.shape[1])
    for c in range(y.shape[1]):
        xc, yc = x[..., min(c, x.shape[-1] - 1)].ravel(), y[:, c].ravel()
        if xc.std() == 0:
            raise ValueError("explain: raw images are constant, cannot relate them to inputs")
        a[c], b[c] = np.polyfit(xc, yc, 1)
        if np.abs(a[c] * xc + b[c] - yc).max() > 1e-3 * max(1.0, np.abs(yc).max()):
            raise ValueError(f"explain: inputs channel {c} is not a per-channel affine "
                             "normalisation of the raw images (augmented or resized differently?)")

    def to_input(pixels) -> torch.Tensor:
        """uint8-scale pixels [..., H, W, C'] (or a scalar) to model-space tensors."""
        if np.isscalar(pixels):
            return torch.tensor(a * pixels + b, dtype=torch.float32)
        pixels = np.asarray(pixels, dtype=np.float64)[..., : len(a)]
        return torch.from_numpy(a * pixels + b).float().permute(0, 3, 1, 2).contiguous()
    return to_input
