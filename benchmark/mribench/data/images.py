"""Decode any image to the configured channels and size; the perceptual hash of every file.

Decoded pixels live in the on-disk store (`mribench.data.store`), one file per image set and
preprocessing, keyed by the files' content hashes: a renamed or copied file reuses its pixels and
an edited file never serves stale ones. The perceptual hash used by the leakage audit is computed
from the full-resolution image in the same decode and kept in `<cache>/phash256-ac.json`, so a
warm cache never decodes a JPEG again (and writes nothing: a read-only cache folder works).
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

from mribench.config import PreprocessConfig
from mribench.data import store
from mribench.data.store import PixelStore
from mribench.files import file_sha256
from mribench.data.locate import cache_root

RESAMPLE = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}
PHASH_FILE = "phash256-ac.json"  # renamed whenever the hash definition changes

_state: dict = {"disk": None, "phash_new": False}
_phash: dict[str, str] = {}  # sha256 -> 256-bit perceptual hash as 64 hex digits
_phash_loaded: set[Path] = set()
_stores: dict[tuple, list[PixelStore]] = {}  # (cache folder, preprocessing) -> this process's


def set_cache_dir(cache_dir: str | Path | None) -> Path:
    _state["disk"] = cache_root(str(cache_dir) if cache_dir else None)
    return _state["disk"]


def cache_dir() -> Path:
    """The cache folder in use; other per-image caches (brain masks) keep their files here."""
    return _state["disk"] or set_cache_dir(None)



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


def _load_phashes() -> None:
    path = cache_dir() / PHASH_FILE
    if path not in _phash_loaded:
        _phash_loaded.add(path)
        if path.is_file():
            try:
                _phash.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass  # a damaged cache file is rebuilt, never trusted


def save_phashes() -> None:
    """Write the hashes computed in this process; nothing new, nothing written."""
    if not _state["phash_new"]:
        return
    _load_phashes()
    data = json.dumps(_phash, sort_keys=True).encode()
    try:
        _atomic_write(cache_dir() / PHASH_FILE, lambda fh: fh.write(data))
        _state["phash_new"] = False
    except OSError as err:
        store.warn(f"cannot write {cache_dir() / PHASH_FILE} ({err.strerror or err}); perceptual hashes "
             "are recomputed next time", once=f"phash {cache_dir()}")


def inspect(path: Path, sha: str, pixels: PixelStore | None = None) -> str:
    """Validate one file; returns its perceptual hash and fills its row of `pixels` if missing.

    Decodes only when the hash or the pixels are not cached; decode errors propagate (the caller
    names the file).
    """
    _load_phashes()
    need_pixels = pixels is not None and pixels.missing(sha)
    if sha in _phash and not need_pixels:
        return _phash[sha]
    img = decode(path)
    if sha not in _phash:
        _phash[sha], _state["phash_new"] = perceptual_hash(img), True
    if need_pixels:
        pixels.put(sha, to_pixels(img, pixels.pre))
    return _phash[sha]


def perceptual_hash(img: Image.Image) -> str:
    """256-bit pHash (16x16 DCT) of the contrast-stretched grey image, as 64 hex digits.

    Measured on the 7023 set: MRI slices are mostly black, so the usual 64-bit pHash puts clearly
    different patients within 4 bits of each other; with 256 bits such pairs sit 50+ bits apart
    while JPEG re-encodes, resizes and brightness/contrast changes stay within ~8. The 1% contrast
    stretch makes linear intensity changes invisible without amplifying background noise (full
    histogram equalisation does, and then misses re-encoded copies).
    """
    return str(imagehash.phash(ImageOps.autocontrast(img.convert("L"), cutoff=1), hash_size=16))


def open_store(pre: PreprocessConfig, sources: dict[str, Path]) -> PixelStore:
    """The store for these files (sha256 -> file) in the cache folder: this process's, or the
    entry on disk when it proves itself, or a fresh one whose missing rows the caller fills
    (`put`) and publishes (`finish`)."""
    known = _stores.setdefault((str(cache_dir()), store.pre_key(pre)), [])
    for pixels in known:
        if set(sources) == set(pixels.row_of):
            pixels.paths.update(sources)
            return pixels
    pixels = PixelStore(cache_dir(), pre, sources)
    why = pixels.load()
    if why is not None:
        if why != "absent":
            store.warn(f"decoded-image cache {pixels.file} is not used: {why}; rebuilding it")
        pixels.begin()
    known.append(pixels)
    return pixels


def pixels_for(paths: list[Path], pre: PreprocessConfig) -> list[tuple[PixelStore, str]]:
    """(store, sha256) holding each file's pixels; files no store of this process holds yet get
    one of their own (decoded now, or found on disk)."""
    known = _stores.get((str(cache_dir()), store.pre_key(pre)), [])
    shas = [file_sha256(Path(p)) for p in paths]
    found = [next((s for s in known if sha in s.row_of and not s.missing(sha)), None)
             for sha in shas]
    absent = {sha: Path(p) for p, sha, f in zip(paths, shas, found) if f is None}
    if absent:
        pixels = open_store(pre, absent)
        for sha, path in absent.items():
            if pixels.missing(sha):
                pixels.put(sha, to_pixels(decode(path), pre))
        pixels.finish()
        found = [f or pixels for f in found]
    return list(zip(found, shas))


def load_image(path: str | Path, pre: PreprocessConfig) -> np.ndarray:
    """uint8 [H, W, C] at pre.image_size with pre.channels, from the store (built if needed)."""
    pixels, sha = pixels_for([Path(path)], pre)[0]
    return pixels.read(sha)
