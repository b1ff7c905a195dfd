"""The images a `predict` names: files, folders (every image under them) or CSV manifests."""
from __future__ import annotations

import csv
from pathlib import Path

from mribench.data.samples import DataError
from mribench.data.scan import IMAGE_EXTENSIONS


def collect(paths: list[str]) -> list[tuple[Path, str | None]]:
    """(file, label or None) per image, in the order given (a folder's images sorted)."""
    out: list[tuple[Path, str | None]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"{raw}: no such file or folder")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise DataError(f"{raw}: no image files in this folder (looked for "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
            out += [(p, None) for p in found]
        elif path.suffix.lower() == ".csv":
            out += manifest(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            out.append((path, None))
        else:
            raise DataError(f"{raw}: not an image file ({', '.join(sorted(IMAGE_EXTENSIONS))}), "
                            "a folder or a CSV manifest")
    return out


def manifest(path: Path) -> list[tuple[Path, str | None]]:
    """A CSV with a `path` column (relative to the CSV's folder) and optionally `label`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if "path" not in (reader.fieldnames or []):
                raise DataError(f"{path}: missing column 'path'; header is {reader.fieldnames}, "
                                "expected path[,label]")
            rows = list(enumerate(reader, start=2))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    out = []
    for line, row in rows:
        name = (row.get("path") or "").strip()
        if not name:
            raise DataError(f"{path}:{line}: empty path")
        file = (path.parent / name).resolve()
        if not file.is_file():
            raise DataError(f"{path}:{line}: {name} listed but missing")
        out.append((file, (row.get("label") or "").strip() or None))
    if not out:
        raise DataError(f"{path}: the manifest lists no image")
    return out
