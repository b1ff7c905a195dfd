"""The images a `predict` names: files, folders (every image under them) or CSV manifests."""
from __future__ import annotations

from pathlib import Path

from mribench.data.samples import DataError
from mribench.data.scan import IMAGE_EXTENSIONS, read_csv


def collect(paths: list[str]) -> list[tuple[Path, str | None]]:
    """(file, label or None) per image, in the order given (a folder's images sorted). Only
    regular files are read: anything else named like an image (a FIFO would block the read for
    ever, a device, a socket) is named in one line and never opened."""
    out: list[tuple[Path, str | None]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DataError(f"{raw}: no such file or folder")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                           and not p.is_dir()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            for p in found:
                _regular(p)
            if not found:
                raise DataError(f"{raw}: no image files in this folder (looked for "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
            out += [(p, None) for p in found]
        elif path.suffix.lower() == ".csv":
            out += manifest(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            out.append((_regular(path), None))
        else:
            raise DataError(f"{raw}: not an image file ({', '.join(sorted(IMAGE_EXTENSIONS))}), "
                            "a folder or a CSV manifest")
    return out


def _regular(path: Path, listed: str = "") -> Path:
    if not path.is_file():
        kind = "a dangling link" if path.is_symlink() and not path.exists() else \
            "not a regular file (a FIFO, socket or device)"
        raise DataError(f"{listed}{path}: {kind}; only regular image files are read")
    return path


def manifest(path: Path) -> list[tuple[Path, str | None]]:
    """A CSV with a `path` column (relative to the CSV's folder) and optionally `label`."""
    header, rows = read_csv(path)
    if "path" not in header:
        raise DataError(f"{path}: missing column 'path'; header is {header}, expected "
                        "path[,label]")
    out = []
    for line, row in rows:
        name = (row.get("path") or "").strip()
        if not name:
            raise DataError(f"{path}:{line}: empty path")
        file = (path.parent / name).resolve()
        if not file.exists() and not file.is_symlink():
            raise DataError(f"{path}:{line}: {name} listed but missing")
        _regular(file, f"{path}:{line}: ")
        out.append((file, (row.get("label") or "").strip() or None))
    if not out:
        raise DataError(f"{path}: the manifest lists no image")
    return out
