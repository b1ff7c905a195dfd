"""How faithful is a saliency map to the model? Deletion and insertion areas (Petsiuk et al.,
RISE, 2018), in plain torch so every explanation method is scored the same way.

Deletion: remove pixels most-salient first (set them to the image's "black", i.e. raw 0 in
the model's input space) and track the probability of the explained class; a faithful map makes it
fall fast, so a LOWER area is better. Insertion: start from a heavily blurred image and put the
most-salient pixels back first; a faithful map makes the probability rise fast, so HIGHER is
better. Areas are the mean probability over the removed/inserted fraction 0..1 (trapezoid rule).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

STEPS = 10  # 10% of the pixels per step: 11 forward passes per image and curve


def pixel_order(saliency: np.ndarray, seed: int) -> np.ndarray:
    """Flat pixel indices, most salient first; ties (flat Grad-CAM zeros, LIME superpixels) are
    broken at random with a fixed seed rather than in raster order, which would bias the curve."""
    tiebreak = np.random.default_rng(seed).random(saliency.size)
    return np.lexsort((tiebreak, -saliency.ravel()))


def blur(inputs: torch.Tensor, sigma_frac: float = 0.1) -> torch.Tensor:
    """Gaussian blur with sigma a fraction of the image side (the insertion starting point)."""
    side = min(inputs.shape[-2:])
    sigma = max(1.0, sigma_frac * side)
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = inputs.shape[1]
    out = F.pad(inputs, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


@torch.no_grad()
def _curve(model: torch.nn.Module, start: torch.Tensor, end: torch.Tensor, order: np.ndarray,
           target: int, steps: int) -> np.ndarray:
    """Probability of `target` as pixels switch from `start` to `end` in `order`, steps+1 points."""
    h, w = start.shape[-2:]
    ranks = torch.empty(h * w, dtype=torch.long)
    ranks[torch.from_numpy(order)] = torch.arange(h * w)
    counts = torch.round(torch.linspace(0, h * w, steps + 1)).long()
    switched = (ranks.view(1, 1, h, w) < counts.view(-1, 1, 1, 1)).to(start.device)
    batch = torch.where(switched, end.unsqueeze(0), start.unsqueeze(0))
    return torch.softmax(model(batch), dim=1)[:, target].float().cpu().numpy()


def deletion_insertion(model: torch.nn.Module, inputs: torch.Tensor, saliency: np.ndarray,
                       targets: list[int], removed: torch.Tensor, steps: int = STEPS,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image deletion and insertion areas.

    inputs [N, C, H, W] (model space), saliency [N, H, W], targets the explained class per image,
    removed [C] or [N, C, H, W]: what a deleted pixel becomes.
    """
    if saliency.shape != (inputs.shape[0], *inputs.shape[-2:]):
        raise ValueError(f"saliency shape {saliency.shape} does not match inputs "
                         f"{tuple(inputs.shape)}")
    removed = removed.view(1, -1, 1, 1) if removed.dim() == 1 else removed
    removed = removed.to(inputs).expand_as(inputs)
    blurred = blur(inputs)
    deletion, insertion = [], []
    for i, target in enumerate(targets):
        order = pixel_order(saliency[i], seed + i)
        falling = _curve(model, inputs[i], removed[i], order, target, steps)
        rising = _curve(model, blurred[i], inputs[i], order, target, steps)
        deletion.append(np.trapezoid(falling, dx=1.0 / steps))
        insertion.append(np.trapezoid(rising, dx=1.0 / steps))
    return np.asarray(deletion), np.asarray(insertion)
