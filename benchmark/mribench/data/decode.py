"""Decoding one image file: any supported format to 'L' or 'RGB' at full size, resized pixels,
and the perceptual hash the leakage audit uses. The one place images are decoded: the scan's
validation (images.py) and the pixel store's rebuild (store.py) both come here."""
from __future__ import annotations

import io
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from mribench.config.schema import PreprocessConfig

RESAMPLE = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


def decode(path: Path) -> Image.Image:
    """Open any supported image as 'L' or 'RGB' at full size (errors propagate to the caller)."""
    return decode_bytes(path.read_bytes())


def decode_bytes(data: bytes) -> Image.Image:
    """`decode` of a file's bytes (an image posted to a served model)."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # forces the full decode: truncated or corrupt files fail here
        img = ImageOps.exif_transpose(img)
    return to_mode(img)


def to_mode(img: Image.Image) -> Image.Image:
    """Any PIL image (a decoded file, an array) as 'L' or 'RGB', as every loader sees it."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float scans: scale by the image's own maximum so 12-bit data keeps its contrast
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max()
        arr = arr * (255.0 / peak) if peak > 0 else arr
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        # transparent pixels become black, the background of an MRI slice
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    if img.mode in ("1", "L"):
        return img.convert("L")
    return img.convert("RGB")  # RGB, CMYK, YCbCr, LAB, HSV


def to_pixels(img: Image.Image, pre: PreprocessConfig) -> np.ndarray:
    img = img.convert("L" if pre.channels == 1 else "RGB")
    img = img.resize((pre.image_size, pre.image_size), RESAMPLE[pre.interpolation])
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def perceptual_hash(img: Image.Image) -> str:
    """256-bit pHash (16x16 DCT) of the contrast-stretched grey image, as 64 hex digits.

    Measured on the 7023 set: MRI slices are mostly black, so the usual 64-bit pHash puts clearly
    different patients within 4 bits of each other; with 256 bits such pairs sit 50+ bits apart
    while JPEG re-encodes, resizes and brightness/contrast changes stay within ~8. The 1% contrast
    stretch makes linear intensity changes invisible without amplifying background noise (full
    histogram equalisation does, and then misses re-encoded copies).
    """
    return str(imagehash.phash(ImageOps.autocontrast(img.convert("L"), cutoff=1), hash_size=16))
