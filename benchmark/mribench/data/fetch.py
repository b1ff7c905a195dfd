"""Download a named dataset, check it, extract it safely and arrange the expected layout.

Direct archives (the publisher's GitHub zip) stream through urllib with a size cap and, when the
registry pins one, a sha256 check. Kaggle-hosted sets go through the official `kaggle` client,
which reads its own credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY); this module
never reads, logs or prints them. Extraction refuses the whole archive, before writing its bulk,
if any member is absolute, climbs out with `..`, is a link or a device, if its declared size
exceeds the limit (a multiple of the dataset's known size, and the free disk space), or if it
compresses absurdly well (a zip bomb); while writing it also counts the real bytes (headers can
lie). Refusals name the URL the archive came from.
"""
from __future__ import annotations

import hashlib
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from mribench.data.registry import DatasetSpec, count_files
from mribench.data.samples import DataError

MAX_DOWNLOAD = 4 * 2**30
MAX_EXTRACTED = 8 * 2**30  # absolute cap, whatever the dataset
SIZE_SLACK = 8  # x the dataset's known size: a publisher may re-encode or add files, not 8x
SIZE_EXTRA = 64 * 2**20  # ... plus README files, thumbnails and the like
DISK_RESERVE = 256 * 2**20  # never fill the disk: leave this much free
# Image archives barely compress (JPEG and PNG are compressed already: ratio ~1); a zip bomb of
# zeros reaches ~1000. A member over RATIO_MIN_BYTES that expands more than MAX_RATIO times, or
# an archive whose declared total does, is refused.
MAX_RATIO = 100
RATIO_MIN_BYTES = 2**20
CHUNK = 2**20


def extraction_limit(spec: DatasetSpec, dest: Path) -> tuple[int, str]:
    """The most bytes an archive of `spec` may expand to in `dest`, and why that much."""
    limit, why = MAX_EXTRACTED, f"the absolute cap of {MAX_EXTRACTED} bytes"
    if spec.expected_bytes:
        known = spec.expected_bytes * SIZE_SLACK + SIZE_EXTRA
        if known < limit:
            limit, why = known, (f"{SIZE_SLACK}x the dataset's known size of "
                                 f"{spec.expected_bytes} bytes")
    free = shutil.disk_usage(dest).free - DISK_RESERVE
    if free < limit:
        limit, why = max(free, 0), f"the free space in {dest} (less {DISK_RESERVE} bytes kept free)"
    return limit, why


def download(url: str, target: Path, *, max_bytes: int = MAX_DOWNLOAD, sha256: str | None = None,
             why: str = "the download cap") -> str:
    """Stream `url` to `target`; returns the sha256. Refuses oversized or mismatching bytes."""
    digest, total = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, target.open("wb") as out:
            declared = int(resp.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise DataError(f"{url}: archive is {declared} bytes, over the {max_bytes}-byte "
                                f"limit ({why})")
            while chunk := resp.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(f"{url}: download passed the {max_bytes}-byte limit "
                                    f"({why}); stopped")
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:  # URLError, HTTPError, timeouts
        raise DataError(f"cannot download {url}: {err}") from None
    if declared and total != declared:
        raise DataError(f"{url}: got {total} bytes, server announced {declared}")
    if sha256 and digest.hexdigest() != sha256.lower():
        raise DataError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
    return digest.hexdigest()


def _check_name(label: str, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{label}: refusing absolute member path {name!r}")
    if ".." in path.parts:
        raise DataError(f"{label}: refusing member {name!r} that climbs out with '..'")
    return path


def _members(archive: Path, label: str, max_bytes: int, why: str):
    """(relative path, is_dir, declared size, opener) for every member, after checking the
    whole archive: names, member types, declared size and compression ratio."""
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        infos = zf.infolist()
        for info in infos:
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"{label}: refusing link member {info.filename!r}")
            if (info.file_size > RATIO_MIN_BYTES
                    and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
                raise DataError(f"{label}: refusing member {info.filename!r}: "
                                f"{info.compress_size} bytes expand to {info.file_size} (over "
                                f"{MAX_RATIO}x: a zip bomb, not images)")
        items = [(_check_name(label, i.filename), i.is_dir(), i.file_size,
                  lambda i=i: zf.open(i)) for i in infos]
    elif tarfile.is_tarfile(archive):
        tf = tarfile.open(archive)
        infos = tf.getmembers()
        for m in infos:
            if not (m.isfile() or m.isdir()):
                kind = "link" if m.issym() or m.islnk() else "special"
                raise DataError(f"{label}: refusing {kind} member {m.name!r}")
        items = [(_check_name(label, m.name), m.isdir(), m.size,
                  lambda m=m: tf.extractfile(m)) for m in infos]
    else:
        raise DataError(f"{label}: not a zip or tar archive")
    declared, packed = sum(size for _, _, size, _ in items), archive.stat().st_size
    if declared > max_bytes:
        raise DataError(f"{label}: expands to {declared} bytes, over the limit of {max_bytes} "
                        f"({why}); refused before extracting")
    if declared > RATIO_MIN_BYTES and declared > MAX_RATIO * max(packed, 1):
        raise DataError(f"{label}: {packed} bytes expand to {declared} (over {MAX_RATIO}x: a zip "
                        "bomb, not images); refused before extracting")
    return items


def safe_extract(archive: Path, dest: Path, *, max_bytes: int = MAX_EXTRACTED,
                 source: str | None = None, why: str = "the absolute cap") -> None:
    """Extract into `dest` only if every member is safe; counts real bytes (headers can lie).
    `source` (the URL) names the archive in errors."""
    label = source or archive.name
    items = _members(archive, label, max_bytes, why)
    written = 0
    for rel, is_dir, declared, opener in items:
        target = dest.joinpath(*rel.parts)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        member = 0
        with opener() as src, target.open("wb") as out:
            while chunk := src.read(CHUNK):
                member += len(chunk)
                written += len(chunk)
                if member > declared or written > max_bytes:
                    raise DataError(f"{label}: member {'/'.join(rel.parts)!r} expands beyond "
                                    f"its declared {declared} bytes or the {max_bytes}-byte "
                                    f"limit ({why}); stopped")
                out.write(chunk)


def _layout_root(spec: DatasetSpec, extracted: Path) -> Path:
    """The shallowest folder holding the expected split folders (or class folders)."""
    wanted = set(spec.splits or spec.class_map)
    for folder in sorted([extracted, *(p for p in extracted.rglob("*") if p.is_dir())],
                         key=lambda p: (len(p.parts), str(p))):
        if wanted <= {c.name for c in folder.iterdir() if c.is_dir()}:
            return folder
    raise DataError(f"{spec.name}: the archive has no folder containing {sorted(wanted)}")


def _kaggle_download(slug: str, into: Path) -> Path:
    try:
        import kaggle  # the official client; authenticates from its own config on import
    except ImportError:
        raise DataError(f"{slug} is hosted on Kaggle: `pip install kaggle`, put your API token in "
                        "~/.kaggle/kaggle.json (or set KAGGLE_USERNAME and KAGGLE_KEY), "
                        "then run this command again") from None
    except Exception as err:  # missing or invalid credentials; the client's message holds no secret
        raise DataError(f"Kaggle client could not authenticate ({type(err).__name__}); put your API "
                        "token in ~/.kaggle/kaggle.json or set KAGGLE_USERNAME and KAGGLE_KEY") from None
    kaggle.api.dataset_download_files(slug, path=str(into), unzip=False, quiet=True)
    archives = sorted(into.glob("*.zip"))
    if not archives:
        raise DataError(f"Kaggle returned no archive for {slug}")
    return archives[0]


def fetch(spec: DatasetSpec, dest: Path, *, max_bytes: int | None = None) -> dict:
    """Fetch `spec` into dest/spec.folder; returns what was done and the file counts found."""
    target = dest / spec.folder
    if target.exists():
        counts = count_files(spec, target)
        if counts == spec.expected:
            return {"dataset": spec.name, "path": str(target), "status": "already present", **counts}
        raise DataError(f"{target} already exists but holds {counts}, expected {spec.expected}; "
                        "remove it to fetch again")
    if not spec.url and not spec.kaggle:
        raise DataError(f"{spec.name}: no download source registered")
    dest.mkdir(parents=True, exist_ok=True)
    source = spec.url or f"Kaggle dataset {spec.kaggle}"
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".fetch-{spec.name}-") as tmp:
        tmp = Path(tmp)
        limit, why = extraction_limit(spec, dest) if max_bytes is None else (max_bytes, "asked")
        if spec.url:
            archive = tmp / "archive"
            sha = download(spec.url, archive, max_bytes=min(limit, MAX_DOWNLOAD),
                           sha256=spec.sha256, why=why)
        else:
            archive = _kaggle_download(spec.kaggle, tmp)
            sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        extracted = tmp / "extracted"
        extracted.mkdir()
        if max_bytes is None:  # the download used some of the free space
            limit, why = extraction_limit(spec, dest)
        safe_extract(archive, extracted, max_bytes=limit, source=source, why=why)
        shutil.move(str(_layout_root(spec, extracted)), str(target))
    counts = count_files(spec, target)
    status = "complete" if counts == spec.expected else f"incomplete (expected {spec.expected})"
    return {"dataset": spec.name, "path": str(target), "status": status, "archive_sha256": sha, **counts}
