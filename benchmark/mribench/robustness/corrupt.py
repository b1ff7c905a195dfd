"""One artefact at one severity applied to one decoded image, deterministically (TorchIO).

The image is the pixel store's uint8 [H, W, C] row (data/store.py), before any normalisation.
TorchIO works on [C, H, W, D] volumes; a 2D slice is a volume of depth 1, which TorchIO's 2D
handling recognises (motion then rotates in-plane only, ghosting skips the depth axis). Pixels
become floats in [0, 1], the transform runs, and the result is clipped and rounded back to uint8.

Randomness: TorchIO draws from torch's global generator; each call forks it and seeds it from the
image's content hash and the artefact (not the severity: an image's noise pattern, spike position,
motion timing and bias-field shape are the same at every severity, so severities differ only in
magnitude). The
same image therefore gives the same bytes in every process and for every model, and different
images get different draws.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from mribench.robustness.severities import TABLE, parameters

_NOT_RANGES = ("order", "num_transforms", "axes")  # TorchIO arguments that are not ranges


def seed_of(image_key: str, artefact: str) -> int:
    digest = hashlib.sha256(f"{image_key}:{artefact}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def bias_coefficients(head: np.ndarray, order: int, ratio: float) -> list[float]:
    """TorchIO BiasField coefficients of a smooth field whose 95th / 5th percentile ratio over
    the `head` pixels ([H, W] bool) is `ratio`, with the head's mean log-brightness unchanged.

    The shape is a draw from torch's generator as RandomBiasField makes it (every coefficient
    U(-1, 1)); the constant term, a global brightness factor rather than shading, is replaced by
    the centring. A log-field is linear in the coefficients, so scaling them scales its range.
    Percentiles, not the extremes: a polynomial's extremes sit on a thin rim of the head (the
    skull), so a field scaled by max / min can shade the brain itself hardly at all.
    """
    import torchio as tio

    shape = tio.RandomBiasField(order=order).get_params(order, (-1.0, 1.0))
    shape[0] = 0.0
    log_field = np.log(tio.BiasField.generate_bias_field(
        np.zeros((1, *head.shape, 1)), order, shape))[..., 0][head]
    low, high = np.percentile(log_field, (5, 95))
    span = float(high - low)
    scale = np.log(ratio) / span if span > 0 else 0.0
    coefficients = [c * scale for c in shape]
    coefficients[0] = -float(log_field.mean()) * scale
    return coefficients


def head_mask(volume: torch.Tensor) -> np.ndarray:
    """The pixels the shading is measured on: above a tenth of the image's maximum, in any
    channel (the whole frame when that leaves fewer than 16 pixels, e.g. a blank image)."""
    plane = volume[..., 0].amax(dim=0).numpy()
    head = plane > 0.1 * plane.max()
    return head if head.sum() >= 16 else np.ones_like(head)


def transform(artefact: str, severity: int, volume: torch.Tensor | None = None):
    """The TorchIO transform of this artefact at this severity: every graded range (v, v), or
    (-v, v) for the table's symmetric artefacts; the bias field is built for this `volume`
    ([C, H, W, 1]) from a draw of torch's generator (call it seeded)."""
    import torchio as tio

    kwargs = parameters(artefact, severity)
    if TABLE[artefact].get("scaled"):
        if volume is None:
            raise ValueError(f"{artefact}: the transform is made for one image; pass its volume")
        order = kwargs["order"]
        return tio.BiasField(coefficients=bias_coefficients(head_mask(volume), order,
                                                            kwargs["ratio"]), order=order)
    if artefact == "blur":  # in-plane only: blurring along a depth of 1 would dim the slice
        s = kwargs.pop("std")
        kwargs["std"] = (s, s, s, s, 0.0, 0.0)
    if artefact == "ghosting":
        kwargs["axes"] = (0, 1)  # the phase-encoding direction is one of the in-plane axes
    symmetric = TABLE[artefact].get("symmetric", False)
    fixed = {k: v if k in _NOT_RANGES or isinstance(v, tuple) else (-v if symmetric else v, v)
             for k, v in kwargs.items()}
    return getattr(tio, TABLE[artefact]["transform"])(**fixed)


def corrupt(pixels: np.ndarray, artefact: str, severity: int, image_key: str) -> np.ndarray:
    """uint8 [H, W, C] -> the same image under the artefact, uint8 [H, W, C].

    A grey image stored in three identical channels is corrupted once and copied, so noise
    stays grey; other images are corrupted channel by channel with one draw of the parameters.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(f"corrupt: expected uint8 [H, W, C] pixels, got {pixels.dtype} "
                         f"{pixels.shape}")
    grey = pixels.shape[2] > 1 and all(np.array_equal(pixels[..., 0], pixels[..., c])
                                       for c in range(1, pixels.shape[2]))
    source = pixels[..., :1] if grey else pixels
    volume = torch.from_numpy(source.astype(np.float32) / 255.0).permute(2, 0, 1)[..., None]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_of(image_key, artefact))
        out = transform(artefact, severity, volume)(volume)
    out = torch.as_tensor(out)[..., 0].permute(1, 2, 0).numpy()
    out = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(out, pixels.shape[2], axis=2) if grey else out
