"""Decode any image to the configured channels and size, once per (file content, size).

Two cache levels: memory (per process) and disk (`<cache>/pixels/<sha>-<size>-<ch>-<interp>.npy`,
shared across runs, cells and invocations). The content hash (sha256 of the file bytes) is the key,
so a renamed or copied file reuses its entry and an edited file never serves stale pixels.
The perceptual hash used by the leakage audit is computed from the full-resolution image in the
same decode and kept in `<cache>/phash256-ac.json`, so a warm cache never decodes a JPEG again.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from mribench import settings
from mribench.config import PreprocessConfig
from mribench.files import file_sha256
from mribench.data.locate import cache_root

RESAMPLE = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}
PHASH_FILE = "phash256-ac.json"  # renamed whenever the hash definition changes

_state = {"disk": None, "bytes": 0}
_pixels: dict[tuple, np.ndarray] = {}  # (file identity, preprocess key) -> uint8 HWC
_phash: dict[str, str] = {}  # sha256 -> 256-bit perceptual hash as 64 hex digits
_phash_loaded: set[Path] = set()


def set_cache_dir(cache_dir: str | Path | None) -> Path:
    _state["disk"] = cache_root(str(cache_dir) if cache_dir else None)
    return _state["disk"]


def _disk() -> Path:
    return _state["disk"] or set_cache_dir(None)


def cache_dir() -> Path:
    """The cache folder in use; other per-image caches (brain masks) keep their files here."""
    return _disk()


def _identity(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _pre_key(pre: PreprocessConfig) -> tuple:
    return (pre.image_size, pre.channels, pre.interpolation)


def decode(path: Path) -> Image.Image:
    """Open any supported image as 'L' or 'RGB' at full size (errors propagate to the caller)."""
    with Image.open(io.BytesIO(path.read_bytes())) as img:
        img.load()  # forces the full decode: truncated or corrupt files fail here
        img = ImageOps.exif_transpose(img)
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


def _remember(key: tuple, arr: np.ndarray) -> None:
    arr.flags.writeable = False  # shared by every caller: copy before editing
    if _state["bytes"] + arr.nbytes <= settings.cache_memory_bytes():
        _pixels[key] = arr
        _state["bytes"] += arr.nbytes


def _atomic_write(target: Path, write) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, target)  # concurrent writers of the same entry write the same bytes
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _pixel_file(sha: str, pre: PreprocessConfig) -> Path:
    size, ch, interp = _pre_key(pre)
    return _disk() / "pixels" / sha[:2] / f"{sha}-{size}-{ch}-{interp}.npy"


def _load_phashes() -> None:
    path = _disk() / PHASH_FILE
    if path not in _phash_loaded:
        _phash_loaded.add(path)
        if path.is_file():
            try:
                _phash.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass  # a damaged cache file is rebuilt, never trusted


def save_phashes() -> None:
    if _phash:
        _load_phashes()
        data = json.dumps(_phash, sort_keys=True).encode()
        _atomic_write(_disk() / PHASH_FILE, lambda fh: fh.write(data))


def inspect(path: Path, pre: PreprocessConfig | None) -> tuple[str, str]:
    """Validate one file: (sha256, perceptual hash). Fills the pixel cache for `pre` on the way.

    Decodes only what is not cached; any decode error propagates (the caller names the file).
    """
    _load_phashes()
    sha = file_sha256(path)
    need_pixels = pre is not None and (_identity(path), _pre_key(pre)) not in _pixels
    if need_pixels and _pixel_file(sha, pre).is_file():
        load_image(path, pre)
        need_pixels = False
    if sha in _phash and not need_pixels:
        return sha, _phash[sha]
    img = decode(path)
    _phash[sha] = perceptual_hash(img)
    if need_pixels:
        _store(path, sha, to_pixels(img, pre), pre)
    return sha, _phash[sha]


def perceptual_hash(img: Image.Image) -> str:
    """256-bit pHash (16x16 DCT) of the contrast-stretched grey image, as 64 hex digits.

    Measured on the 7023 set: MRI slices are mostly black, so the usual 64-bit pHash puts clearly
    different patients within 4 bits of each other; with 256 bits such pairs sit 50+ bits apart
    while JPEG re-encodes, resizes and brightness/contrast changes stay within ~8. The 1% contrast
    stretch makes linear intensity changes invisible without amplifying background noise (full
    histogram equalisation does, and then misses re-encoded copies).
    """
    return str(imagehash.phash(ImageOps.autocontrast(img.convert("L"), cutoff=1), hash_size=16))


def _store(path: Path, sha: str, arr: np.ndarray, pre: PreprocessConfig) -> None:
    _atomic_write(_pixel_file(sha, pre), lambda fh: np.save(fh, arr))
    _remember((_identity(path), _pre_key(pre)), arr)


def load_image(path: str | Path, pre: PreprocessConfig) -> np.ndarray:
    """uint8 [H, W, C] at pre.image_size with pre.channels, from memory, disk, or a fresh decode."""
    path = Path(path)
    key = (_identity(path), _pre_key(pre))
    if key in _pixels:
        return _pixels[key]
    sha = file_sha256(path)
    cached = _pixel_file(sha, pre)
    if cached.is_file():
        try:
            arr = np.load(cached)
            _remember(key, arr)
            return arr
        except (OSError, ValueError):
            cached.unlink(missing_ok=True)  # damaged entry: decode again below
    arr = to_pixels(decode(path), pre)
    _store(path, sha, arr, pre)
    return arr
