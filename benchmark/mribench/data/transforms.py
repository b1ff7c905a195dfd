"""uint8 image batches -> normalised, augmented float batches, on whatever device holds them.

The loader hands over [B, H, W, C] uint8 batches and, per image, four uniform numbers drawn from
that image's own seed; everything else happens here, batched, where the batch already is (the GPU
on CUDA). torchvision.transforms.v2 draws one set of random parameters per call, i.e. one for the
whole batch, so the per-image rotation is written out below: the same inverse-affine grid and
fill-mask blend as torchvision's `F.rotate(..., BILINEAR, fill=0)`, one grid per image, one
`grid_sample` for the batch (tests compare it with F.rotate image by image).
"""
from __future__ import annotations

import torch
from torch.nn.functional import grid_sample

from mribench.config.schema import AugmentConfig


def draw(seed: int) -> torch.Tensor:
    """The four uniforms that decide one image's augmentation (rotation, hflip, vflip, brightness)."""
    return torch.rand(4, generator=torch.Generator().manual_seed(seed))


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of [B, C, H, W] counter-clockwise by its own angle (bilinear, zero fill)."""
    b, c, h, w = x.shape
    rad = torch.deg2rad(-(degrees.double() % 360))  # torchvision: inverse matrix of angle -a
    cos, sin = rad.cos(), rad.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([cos, sin, zero, -sin, cos, zero], 1).view(b, 2, 3).to(x.dtype)
    base = torch.empty(1, h, w, 3, dtype=x.dtype, device=x.device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=x.device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h,
                                      device=x.device).unsqueeze_(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2).clone()  # [B, 3, 2]; scalars, not a host tensor: no sync
    rescaled[..., 0] /= 0.5 * w
    rescaled[..., 1] /= 0.5 * h
    grid = base.view(1, h * w, 3).expand(b, -1, -1).bmm(rescaled)
    ones = torch.ones(b, 1, h, w, dtype=x.dtype, device=x.device)
    out = grid_sample(torch.cat([x, ones], 1), grid.view(b, h, w, 2), mode="bilinear",
                      padding_mode="zeros", align_corners=False)
    return out[:, :c] * out[:, c:]  # torchvision's fill blend with fill 0


def augment(x: torch.Tensor, u: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """Random rotation, flips and brightness on [B, C, H, W] in [0, 1], image i from u[i]."""
    u = u.to(x.device, torch.float64)
    per_image = (-1, 1, 1, 1)
    if aug.rotation:
        keep = u[:, 0] == 0.5  # exactly no rotation: torchvision returns the image untouched
        x = torch.where(keep.view(per_image), x, rotate(x, (2 * u[:, 0] - 1) * aug.rotation))
    if aug.hflip:
        x = torch.where((u[:, 1] < 0.5).view(per_image), x.flip(-1), x)
    if aug.vflip:
        x = torch.where((u[:, 2] < 0.5).view(per_image), x.flip(-2), x)
    if aug.brightness:
        factor = (1 + (2 * u[:, 3] - 1) * aug.brightness).to(x.dtype).view(per_image)
        x = (x * factor).clamp(0, 1)
    return x


class ToInput:
    """uint8 [B, H, W, C] (+ per-image uniforms) -> the model's normalised float input."""

    def __init__(self, aug: AugmentConfig | None, mean: torch.Tensor, std: torch.Tensor,
                 channels_last: bool = False):
        self.aug = aug if aug is not None and aug.active else None
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        self.channels_last = channels_last
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, pixels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float().div_(255)  # keeps the HWC (channels-last) layout
        if self.aug is not None:
            x = augment(x, u, self.aug)
        if x.device not in self._on:
            self._on[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        mean, std = self._on[x.device]
        x = (x - mean) / std
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)
