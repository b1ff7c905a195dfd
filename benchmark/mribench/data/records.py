"""A scan's files read once into audit Records (sha-256, perceptual hash, decoded pixels):
the files that cannot be read or decoded go to the scan's problems instead.

prepare() (data/preparation.py) and the provenance check (data/provenance.py) both start from
these records.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from mribench.config.schema import PreprocessConfig
from mribench.console import console
from mribench.data import images
from mribench.data.audit import Record
from mribench.data.scan import IMAGE_EXTENSIONS, Scan
from mribench.files import file_sha256


def validate(scan: Scan, pre: PreprocessConfig | None,
             progress: Callable[[], None] | None = None) -> list[Record]:
    """Decode each file once (cache permitting); bad files go to scan.problems and out of scan.

    With `pre`, the decoded pixels of every good file land in the set's store on disk.
    """
    hashed = []
    for entry in scan.entries:
        if entry.path.suffix.lower() not in IMAGE_EXTENSIONS:
            suffix = entry.path.suffix or "no extension"
            scan.problems.append((str(entry.path), f"not an image file ({suffix})"))
            if progress:
                progress()
            continue
        if entry.path.stat().st_size == 0:
            scan.problems.append((str(entry.path), "empty file (0 bytes)"))
            if progress:
                progress()
            continue
        try:
            hashed.append((entry, file_sha256(entry.path)))
        except OSError as err:
            scan.problems.append((str(entry.path), f"cannot read: {type(err).__name__}: {err}"))
            if progress:
                progress()
    pixels = (images.open_store(pre, {sha: e.path for e, sha in hashed})
              if pre is not None and hashed else None)
    todo = sum(pixels.missing(sha) for _, sha in hashed) if pixels is not None else 0
    if todo >= 100:  # else a long silent pause (~100 s for the 7023 set on a 2-core CPU)
        console.print(f"decoding {todo} images at {pre.image_size} px into the cache "
                      f"{images.cache_dir()} (first use; later runs read them from there) ...",
                      markup=False, highlight=False)
    records, good = [], []
    for entry, sha in hashed:
        try:
            phash = images.inspect(entry.path, sha, pixels)
            records.append(Record(entry.path, entry.cls, entry.split, sha, phash))
            good.append(entry)
        except Exception as err:  # PIL raises many types; the message names the cause
            scan.problems.append((str(entry.path), decode_problem(entry.path, err)))
        if progress:
            progress()
    if pixels is not None:
        pixels.finish()
    images.save_phashes()
    scan.entries = good
    scan.drop_classes_missing_somewhere()
    kept = {e.path for e in scan.entries}
    return [r for r in records if r.path in kept]


def decode_problem(path: Path, err: Exception) -> str:
    """PIL names the in-memory buffer it was given (`<_io.BytesIO object at 0x...>`), not the
    file; the file is named instead."""
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", path.name, str(err))
    return f"cannot decode: {type(err).__name__}: {text}"
