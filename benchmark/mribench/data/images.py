"""Pixels and perceptual hashes of every file, decoded once (decoding itself: decode.py).

Decoded pixels live in the on-disk store (`mribench.data.store`), one file per image set and
preprocessing, keyed by the files' content hashes: a renamed or copied file reuses its pixels and
an edited file never serves stale ones. The perceptual hash used by the leakage audit is computed
from the full-resolution image in the same decode and kept in `<cache>/phash256-ac.json`, so a
warm cache never decodes a JPEG again (and writes nothing: a read-only cache folder works).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mribench.config.schema import PreprocessConfig
from mribench.console import console
from mribench.data import store
from mribench.data.decode import decode, perceptual_hash, to_pixels
from mribench.data.locate import cache_root
from mribench.data.store import PixelStore
from mribench.files import atomic_write, file_sha256

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
        atomic_write(cache_dir() / PHASH_FILE, lambda fh: fh.write(data))
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
        todo = [(sha, path) for sha, path in absent.items() if pixels.missing(sha)]
        if len(todo) >= 100:  # a long silent pause otherwise (~100 s for the 7023 set on 2 cores)
            console.print(f"decoding {len(todo)} images at {pre.image_size} px into the cache "
                          f"{cache_dir()} (first use; later runs read them from there) ...",
                          markup=False, highlight=False)
        for sha, path in todo:
            pixels.put(sha, to_pixels(decode(path), pre))
        pixels.finish()
        found = [f or pixels for f in found]
    return list(zip(found, shas))


def load_image(path: str | Path, pre: PreprocessConfig) -> np.ndarray:
    """uint8 [H, W, C] at pre.image_size with pre.channels, from the store (built if needed)."""
    pixels, sha = pixels_for([Path(path)], pre)[0]
    return pixels.read(sha)
