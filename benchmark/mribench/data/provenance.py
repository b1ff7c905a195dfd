"""Where each image came from, as far as the files can tell: a `source` label per image.

- brain-tumor-mri-7023: `sartaj` when the image is a copy of an image
  of the 3264 set (the SARTAJ set), found by perceptual hash (at most SARTAJ_BITS of 256 bits
  apart, the leakage audit's near-duplicate threshold) against that set in the same data folder;
  otherwise `br35h` for no-tumour images and `figshare` for tumour images, because the
  publisher built the set from exactly these three and only Br35H gave no-tumour images and
  only figshare gave the other tumour images. Without the 3264 set at hand every image is
  `unknown`. The shipped sample's 64 images are all `sartaj` (measured that way, fixed below).
- every other set (the 3264 and 253 sets, user folders and manifests): the file-name family,
  the name without its extension and with digit runs replaced by N (`gg (12).jpg` -> `gg (N)`).
  Families are how the publishers' own sources show: in the 3264 set all 826 training gliomas
  are `gg (N)` while its test gliomas are `image(N)`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mribench.data import store

SARTAJ_SET = "brain-tumor-classification-3264"
SAMPLE = "brain-tumor-mri-7023-sample"
POOLED = ("brain-tumor-mri-7023", SAMPLE)
SARTAJ_BITS = 16
NO_TUMOUR = "notumor"


def family(path: Path) -> str:
    return re.sub(r"\d+", "N", Path(path).stem).strip() or "N"


def _words(phashes: list[str]) -> np.ndarray:
    return np.array([[int(p[k:k + 16], 16) for k in range(0, 64, 16)] for p in phashes],
                    dtype=np.uint64).reshape(len(phashes), 4)


def nearest_bits(queries: list[str], references: list[str], chunk: int = 256) -> np.ndarray:
    """For each query hash, the fewest differing bits to any reference hash (256 if none)."""
    if not references:
        return np.full(len(queries), 256)
    ref, out = _words(references), []
    q = _words(queries)
    for start in range(0, len(q), chunk):
        distance = np.bitwise_count(q[start:start + chunk, None, :] ^ ref[None, :, :]).sum(axis=2)
        out.append(distance.min(axis=1))
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def _sartaj_hashes(data_dir: str | None) -> list[str] | None:
    from mribench.data.locate import where
    from mribench.data.records import validate
    from mribench.data.registry import KNOWN
    from mribench.data.scan import scan_known

    root = where(SARTAJ_SET, data_dir)
    if root is None:
        return None
    scan = scan_known(KNOWN[SARTAJ_SET], root)
    return [r.phash for r in validate(scan, None)]


def sources(name: str, records, data_dir: str | None) -> list[str]:
    """One source label per record (records: data.audit.Record with path, cls, phash)."""
    if name not in POOLED:
        return [family(r.path) for r in records]
    if name == SAMPLE:
        # measured once (2026-12-07): all 64 sample images are copies of 3264-set images (the
        # first 8 names per folder are the `Tr-glTr_N` family); fixed here so that preparing
        # the sample never hashes the whole 3264 set
        return ["sartaj"] * len(records)
    reference = _sartaj_hashes(data_dir)
    if reference is None:
        store.warn(f"{name}: the {SARTAJ_SET} set is not in the data folder, so which images "
                   "are SARTAJ copies cannot be told; every source is 'unknown'",
                   once=f"provenance {name}")
        return ["unknown"] * len(records)
    bits = nearest_bits([r.phash for r in records], reference)
    return ["sartaj" if b <= SARTAJ_BITS else "br35h" if r.cls == NO_TUMOUR else "figshare"
            for r, b in zip(records, bits.tolist())]


def describe(name: str, records, data_dir: str | None) -> list[dict]:
    """Each record's properties (data/properties.py) with its `source`: what the shortcut audit,
    the split's hold_out and the report's slices read."""
    from mribench.data import properties

    rows = properties.of_files([(r.path, r.sha) for r in records])
    for row, source in zip(rows, sources(name, records, data_dir)):
        row["source"] = source
    return rows


def held_out(rows: list[dict], hold_out) -> list[bool]:
    """Which images a split.hold_out block (config HoldOutConfig) matches."""
    wanted = {key: set(getattr(hold_out, key) or ()) for key in ("source", "size", "format")}
    return [any(str(row.get(key)) in values for key, values in wanted.items()) for row in rows]


def check_held_out(name: str, records, held: list[bool]) -> None:
    """A hold-out that leaves a class with no image to train on stops here, naming the class."""
    from mribench.data.samples import DataError

    left = {r.cls for r, h in zip(records, held) if not h}
    missing = sorted({r.cls for r in records} - left)
    if missing and any(held):
        raise DataError(f"dataset {name!r}: split.hold_out holds out every image of class(es) "
                        f"{missing}, leaving none to train on; hold out a source that shares "
                        "its classes with others (`mribench data audit` shows source per class)")
