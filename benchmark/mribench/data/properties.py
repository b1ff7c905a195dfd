"""Properties of an image file that are not anatomy: what the shortcut audit measures.

Per file: original width, height and aspect ratio, file format and size, colour mode and bit
depth, a JPEG quality estimate (from the luminance quantization table Pillow reads; None for
other formats), the black frame around the picture, and intensity statistics of the grey
image (mean, spread, percentiles, background level). Everything but the name depends on the
file's bytes only, so it is cached by sha256 in `<cache>/shortcut-props-v1.json` beside the
perceptual hashes: a rerun decodes nothing.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mribench.data import images, store
from mribench.files import atomic_write

PROPS_FILE = "shortcut-props-v1.json"  # renamed whenever a definition below changes
BLACK = 16  # a row or column whose brightest pixel is at most this is frame, not picture
BITS = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "CMYK": 32, "YCbCr": 24, "LA": 16,
        "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}
# the IJG standard luminance table (JPEG Annex K), row-major as Pillow returns it
IJG_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])

_cache: dict[str, dict] = {}
_state = {"loaded": set(), "new": False}


def jpeg_quality(table) -> int | None:
    """The IJG quality (1-100) whose scaled standard table is nearest this luminance table;
    None when there is no table. Encoders with their own tables (some cameras, Photoshop) get
    the nearest IJG quality, an estimate."""
    if table is None or len(table) != 64:
        return None
    q = np.arange(1, 101)[:, None]
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    candidates = np.clip((IJG_LUMA[None, :] * scale + 50) // 100, 1, 255)
    return int(np.abs(candidates - np.asarray(table)[None, :]).sum(axis=1).argmin() + 1)


def frame(grey: np.ndarray) -> float:
    """Share of the picture's sides that is black frame: rows at the top and bottom and columns
    at the left and right whose brightest pixel is at most BLACK, averaged over both axes."""
    rows, cols = grey.max(axis=1) > BLACK, grey.max(axis=0) > BLACK
    if not rows.any():
        return 1.0

    def margin(lit: np.ndarray) -> float:
        first, last = int(lit.argmax()), int(lit[::-1].argmax())
        return (first + last) / len(lit)
    return round((margin(rows) + margin(cols)) / 2, 4)


def measure(data: bytes) -> dict:
    """The content properties of one file's bytes (decode errors propagate)."""
    with Image.open(io.BytesIO(data)) as img:
        fmt, mode = img.format or "unknown", img.mode
        table = getattr(img, "quantization", None) or {}
        img.load()
        width, height = img.size  # as stored: the frame a model never sees rotated
        grey = np.asarray(ImageOps.exif_transpose(img).convert("L"), dtype=np.float64)
    edge = np.concatenate([grey[:2].ravel(), grey[-2:].ravel(), grey[:, :2].ravel(),
                           grey[:, -2:].ravel()])
    p = np.percentile(grey, [1, 5, 50, 95, 99])
    return {"width": width, "height": height, "format": fmt, "mode": mode,
            "bit_depth": BITS.get(mode, 8), "file_kb": round(len(data) / 1024, 2),
            "bytes_per_pixel": round(len(data) / (width * height), 4),
            "jpeg_quality": jpeg_quality(table.get(0)) if fmt == "JPEG" else None,
            "frame": frame(grey), "mean": round(float(grey.mean()), 2),
            "std": round(float(grey.std()), 2),
            **{f"p{k}": round(float(v), 1) for k, v in zip((1, 5, 50, 95, 99), p)},
            "background": round(float(np.median(edge)), 1)}


def name_pattern(path: Path) -> str:
    """The file name with every run of digits replaced by N: `gg (12).jpg` -> `gg (N).jpg`."""
    return re.sub(r"\d+", "N", path.name)


def _load() -> Path:
    path = images.cache_dir() / PROPS_FILE
    if path not in _state["loaded"]:
        _state["loaded"].add(path)
        if path.is_file():
            try:
                _cache.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass  # a damaged cache is rebuilt, never trusted
    return path


def _save(path: Path) -> None:
    if not _state["new"]:
        return
    data = json.dumps(_cache, sort_keys=True).encode()
    try:
        atomic_write(path, lambda fh: fh.write(data))
        _state["new"] = False
    except OSError as err:
        store.warn(f"cannot write {path} ({err.strerror or err}); image properties are "
                   "measured again next time", once=f"props {path}")


def of_files(files: list[tuple[Path, str]]) -> list[dict]:
    """Properties of each (path, sha256), from the cache or measured now; plus `size` (WxH),
    `aspect` and `name_pattern`, which are cheap or depend on the name."""
    path = _load()
    out = []
    for file, sha in files:
        if sha not in _cache:
            _cache[sha], _state["new"] = measure(file.read_bytes()), True
        row = dict(_cache[sha])
        row["size"] = f"{row['width']}x{row['height']}"
        row["aspect"] = round(row["width"] / row["height"], 4)
        row["name_pattern"] = name_pattern(file)
        out.append(row)
    _save(path)
    return out
