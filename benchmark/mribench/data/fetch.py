"""Download a named dataset, check it, extract it safely and arrange the expected layout.

Direct archives (the publisher's GitHub zip) stream through urllib with a size cap and, when the
registry pins one, a sha256 check. Kaggle-hosted sets go through the official `kaggle` client,
which reads its own credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY); this module
never reads, logs or prints them. Extraction refuses the whole archive if any member is absolute,
climbs out with `..`, is a link or a device, or if the archive would expand beyond a size limit.
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
MAX_EXTRACTED = 8 * 2**30
CHUNK = 2**20


def download(url: str, target: Path, *, max_bytes: int = MAX_DOWNLOAD, sha256: str | None = None) -> str:
    """Stream `url` to `target`; returns the sha256. Refuses oversized or mismatching bytes."""
    digest, total = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, target.open("wb") as out:
            declared = int(resp.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise DataError(f"{url}: archive is {declared} bytes, over the {max_bytes}-byte limit")
            while chunk := resp.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(f"{url}: download passed the {max_bytes}-byte limit; stopped")
                digest.update(chunk)
                out.write(chunk)
    except OSError as err:  # URLError, HTTPError, timeouts
        raise DataError(f"cannot download {url}: {err}") from None
    if declared and total != declared:
        raise DataError(f"{url}: got {total} bytes, server announced {declared}")
    if sha256 and digest.hexdigest() != sha256.lower():
        raise DataError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
    return digest.hexdigest()


def _check_name(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{archive.name}: refusing absolute member path {name!r}")
    if ".." in path.parts:
        raise DataError(f"{archive.name}: refusing member {name!r} that climbs out with '..'")
    return path


def _members(archive: Path, max_bytes: int):
    """(relative path, is_dir, opener) for every member, after checking the whole archive."""
    if zipfile.is_zipfile(archive):
        zf = zipfile.ZipFile(archive)
        infos = zf.infolist()
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DataError(f"{archive.name}: refusing link member {info.filename!r}")
        declared = sum(i.file_size for i in infos)
        items = [(_check_name(archive, i.filename), i.is_dir(), lambda i=i: zf.open(i)) for i in infos]
    elif tarfile.is_tarfile(archive):
        tf = tarfile.open(archive)
        infos = tf.getmembers()
        for m in infos:
            if not (m.isfile() or m.isdir()):
                raise DataError(f"{archive.name}: refusing {'link' if m.issym() or m.islnk() else 'special'}"
                                f" member {m.name!r}")
        declared = sum(m.size for m in infos)
        items = [(_check_name(archive, m.name), m.isdir(), lambda m=m: tf.extractfile(m)) for m in infos]
    else:
        raise DataError(f"{archive.name}: not a zip or tar archive")
    if declared > max_bytes:
        raise DataError(f"{archive.name}: expands to {declared} bytes, over the {max_bytes}-byte limit")
    return items


def safe_extract(archive: Path, dest: Path, *, max_bytes: int = MAX_EXTRACTED) -> None:
    """Extract into `dest` only if every member is safe; counts real bytes (headers can lie)."""
    items = _members(archive, max_bytes)
    written = 0
    for rel, is_dir, opener in items:
        target = dest.joinpath(*rel.parts)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, target.open("wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise DataError(f"{archive.name}: expands beyond the {max_bytes}-byte limit; stopped")
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


def fetch(spec: DatasetSpec, dest: Path, *, max_bytes: int = MAX_EXTRACTED) -> dict:
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
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".fetch-{spec.name}-") as tmp:
        tmp = Path(tmp)
        if spec.url:
            archive = tmp / "archive"
            sha = download(spec.url, archive, max_bytes=max_bytes, sha256=spec.sha256)
        else:
            archive = _kaggle_download(spec.kaggle, tmp)
            sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        extracted = tmp / "extracted"
        extracted.mkdir()
        safe_extract(archive, extracted, max_bytes=max_bytes)
        shutil.move(str(_layout_root(spec, extracted)), str(target))
    counts = count_files(spec, target)
    status = "complete" if counts == spec.expected else f"incomplete (expected {spec.expected})"
    return {"dataset": spec.name, "path": str(target), "status": status, "archive_sha256": sha, **counts}
