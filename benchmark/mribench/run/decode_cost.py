"""Decoding images on first use, costed apart from training: per image set and preprocessing,
whether the decoded-pixel store in the cache folder already holds it (warm: nothing to decode)
and, when not, the set's unique files / a decode rate measured on a few of its real files (the
same decode + resize a run does, data/decode.py)."""
from __future__ import annotations

import hashlib
import time

from mribench.config.schema import PreprocessConfig
from mribench.data.decode import decode, perceptual_hash, to_pixels
from mribench.data.locate import cache_root, find_root
from mribench.data.samples import DataError
from mribench.data.scan import IMAGE_EXTENSIONS
from mribench.data.store import PixelStore
from mribench.files import file_sha256

SAMPLE = 12  # real files decoded to measure the rate (spread over the set)


def _files(name: str, root: str | None, data_dir: str | None) -> list:
    try:
        folder = find_root(name, root, data_dir)
    except (DataError, OSError):
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _classes(ds, files: list) -> int:
    """Classes x split folders of a subset (subset_per_class counts per class and split)."""
    from mribench.data.registry import KNOWN

    spec = KNOWN.get(ds.name)
    if spec is not None and not ds.root:
        return len(spec.classes) * len(spec.expected)
    return len({p.parent for p in files}) or 1


def decode_rate(files: list, pre: PreprocessConfig) -> float:
    """Seconds per image to decode, resize and perceptual-hash (what a run does to a new file),
    the median over SAMPLE of `files` after one untimed warm-up file (lazy imports)."""
    picked = files[:: max(1, len(files) // SAMPLE)][:SAMPLE]
    perceptual_hash(decode(picked[0]))
    times = []
    for path in picked:
        start = time.perf_counter()
        img = decode(path)
        to_pixels(img, pre)
        perceptual_hash(img)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def stores(cells, data_dir: str | None, cache_dir: str | None) -> list[dict]:
    """One row per (image set, preprocessing) the cells read: files, unique images, whether the
    pixel store is warm, and the seconds to decode it on first use (0 when warm)."""
    wanted: dict[tuple, tuple] = {}
    for cell in cells:
        sets = [cell.dataset] + list(cell.dataset.external)
        for ds in sets:
            if ds.manifest:
                continue  # a manifest's files are only known once the run reads it
            pre = cell.preprocess
            wanted.setdefault((ds.name, ds.root, pre.image_size, pre.channels,
                               pre.interpolation), (ds, pre))
    rows = []
    folder = cache_root(cache_dir)
    for (name, root, size, _, _), (_ds, pre) in wanted.items():
        files = _files(name, root, data_dir)
        if not files:
            continue
        if _ds.subset_per_class:  # a subset's store holds its own files: costed, not looked up
            unique = min(len(files), _ds.subset_per_class * _classes(_ds, files))
            warm = False
        else:
            sources = {file_sha256(p): p for p in files}  # the run's own store key (store.py)
            unique = len(sources)
            warm = PixelStore(folder, pre, sources).load() is None  # what a run would adopt
        per_image = 0.0 if warm else decode_rate(files, pre)
        rows.append({"dataset": name, "px": size, "files": len(files), "unique": unique,
                     "cache": "warm" if warm else "cold", "seconds_per_image": per_image,
                     "seconds": round(per_image * unique, 3)})
    return rows


def robust_audits(cells, data_dir: str | None, cache_dir: str | None) -> list[dict]:
    """Datasets whose robust-copy audit (`dedup: robust` / `split.groups: robust`) runs before
    their cells: its cache (data/copies.py's candidate pairs and their scores) warm or cold.
    Not costed: its time depends on the candidate pairs found (docs/speed.md has a measurement)."""
    from mribench.data import copies

    folder = cache_root(cache_dir)
    scores = None
    rows, seen = [], set()
    for cell in cells:
        ds = cell.dataset
        robust = ds.dedup == "robust" or getattr(cell.split, "groups", None) == "robust"
        if not robust or ds.manifest or (ds.name, ds.root) in seen:
            continue
        seen.add((ds.name, ds.root))
        files = _files(ds.name, ds.root, data_dir)
        if not files:
            continue
        unique = sorted({file_sha256(p) for p in files})
        digest = hashlib.sha256(("\n".join(unique) + f"\n{ds.copy_match.candidates}")
                                .encode()).hexdigest()[:16]  # copies.scored_candidates' key
        pairs = copies._read_json(folder / copies.CANDIDATE_FILE.format(digest)).get("pairs")
        if pairs is not None and scores is None:
            scores = copies._read_json(folder / copies.SCORE_FILE)
        warm = pairs is not None and all(f"{a} {b}" in scores for a, b in pairs)
        rows.append({"dataset": ds.name, "unique": len(unique),
                     "cache": "warm" if warm else "cold"})
    return rows
