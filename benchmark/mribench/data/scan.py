"""Find a dataset's files and their labels (folder layout or CSV manifest); no decoding here.

The result lists every candidate file with its canonical class and official split
("train", "val", "test", or "all" when the publisher made no split), plus the structural
problems found: file problems (stray images, missing manifest files; `on_bad_image: skip`
may leave these out) and class problems (empty, missing or unexpected class folders, a class
absent from a split; these always stop, since leaving them out would change the task).
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mribench.data.registry import KNOWN, DatasetSpec
from mribench.data.samples import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}


@dataclass
class Entry:
    path: Path
    cls: str  # canonical class name
    split: str  # train | val | test | all


@dataclass
class Scan:
    root: Path
    entries: list[Entry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): files
    class_problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def drop_classes_missing_somewhere(self) -> None:
        """A class must have files in every split; otherwise it is a class problem (and its
        files are left out of what `data audit` hashes)."""
        by_split: dict[str, set[str]] = defaultdict(set)
        for e in self.entries:
            by_split[e.split].add(e.cls)
        every = set.union(*by_split.values()) if by_split else set()
        bad = set()
        for cls in sorted(every):
            missing = sorted(s for s, present in by_split.items() if cls not in present)
            if missing:
                bad.add(cls)
                self.class_problems.append((
                    str(self.root), f"class {cls!r} has no files in split(s) {missing} "
                                    f"(present in {sorted(s for s in by_split if s not in missing)})"))
        self.entries = [e for e in self.entries if e.cls not in bad]

    def fold_labels(self, name: str, label_map: dict[str, str] | None) -> None:
        """Apply the dataset's label_map, then refuse labels that differ only in case or
        surrounding spaces (`Glioma`, `glioma `): silently two classes, or silently one, would
        both be wrong guesses. Labels are stripped afterwards."""
        label_map = label_map or {}
        labels = {e.cls for e in self.entries} | {e.cls.strip() for e in self.entries}
        publisher = KNOWN[name].class_map if name in KNOWN else {}
        unknown = sorted(k for k in label_map if k not in labels and publisher.get(k) not in labels)
        if unknown:  # a typo in a map key would otherwise leave that label unmapped, silently
            raise DataError(f"dataset {name!r}: label_map names {unknown}, which match no "
                            f"label; its labels are {sorted({e.cls for e in self.entries})}")
        label_map = {publisher.get(k, k) if k not in labels else k: v for k, v in label_map.items()}
        for e in self.entries:
            e.cls = label_map.get(e.cls, label_map.get(e.cls.strip(), e.cls))
        spellings: dict[str, set[str]] = defaultdict(set)
        for e in self.entries:
            spellings[e.cls.strip().casefold()].add(e.cls)
        clashes = [sorted(s) for s in spellings.values() if len(s) > 1]
        if clashes:
            first = clashes[0]
            fold = ", ".join(f"{s!r}: {first[0].strip()!r}" for s in first[1:])
            raise DataError(
                f"dataset {name!r}: labels {' and '.join(map(repr, first))} differ only in case "
                f"or surrounding spaces" + (f" (and {len(clashes) - 1} more such group(s))"
                                            if len(clashes) > 1 else "")
                + f"; fix them in {self.root}, or fold them with label_map: {{{fold}}} "
                "in the suite's dataset entry")
        for e in self.entries:
            e.cls = e.cls.strip()

    def subset(self, per_class: int | None) -> None:
        """Deterministic first N files per (split, class), by file name, for tiny smoke runs."""
        if not per_class:
            return
        groups: dict[tuple[str, str], list[Entry]] = defaultdict(list)
        for e in self.entries:
            groups[(e.split, e.cls)].append(e)
        keep = [e for g in groups.values() for e in sorted(g, key=lambda e: e.path.name)[:per_class]]
        self.entries = sorted(keep, key=lambda e: str(e.path))


def _visible(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith("."))  # skip .DS_Store & co


def _scan_class_dirs(scan: Scan, parent: Path, split: str, class_map: dict[str, str] | None) -> None:
    """Add the files of each class folder under `parent`; class_map None = folder name is the class."""
    found = set()
    for item in _visible(parent):
        if item.is_file():
            if item.suffix.lower() in IMAGE_EXTENSIONS:
                scan.problems.append((str(item), "image outside any class folder"))
            continue
        if class_map is not None and item.name not in class_map:
            scan.class_problems.append((str(item), f"unexpected class folder; expected "
                                                   f"{sorted(class_map)}"))
            continue
        found.add(item.name)
        files = _class_files(scan, item)
        if not files:
            scan.class_problems.append((str(item), "empty class folder"))
        cls = class_map[item.name] if class_map is not None else item.name
        scan.entries.extend(Entry(p, cls, split) for p in files)
    for name in sorted(set(class_map or ()) - found):
        scan.class_problems.append((str(parent / name), "class folder missing"))


def _class_files(scan: Scan, folder: Path) -> list[Path]:
    """The regular files directly inside a class folder. Never silently dropped or added:
    an entry named like an image that is not a regular file (a directory, a dangling or
    unreadable link, a socket) is a bad file (an error, or skipped and listed with
    `on_bad_image: skip`); a sub-folder is refused with its name, since whether its images
    belong to the class is not ours to guess (move them up, or list files in a CSV manifest)."""
    files = []
    for entry in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir() and entry.suffix.lower() not in IMAGE_EXTENSIONS:
            scan.class_problems.append((str(entry), "a sub-folder inside a class folder is not "
                                       "read: move its images into the class folder, or list "
                                       "them in a CSV manifest"))
        else:
            kind = ("a directory" if entry.is_dir() else "a dangling link" if entry.is_symlink()
                    and not entry.exists() else "not a regular file")
            scan.problems.append((str(entry), f"{kind}, not an image file"))
    return files


def scan_known(spec: DatasetSpec, root: Path) -> Scan:
    scan = Scan(root)
    if not spec.splits:
        _scan_class_dirs(scan, root, "all", spec.class_map)
    for folder in spec.splits:
        if not (root / folder).is_dir():
            raise DataError(f"dataset {spec.name!r}: split folder {root / folder} missing "
                            f"(expected {list(spec.splits)} under {root})")
        _scan_class_dirs(scan, root / folder, SPLIT_NAMES[folder.lower()], spec.class_map)
    return scan


def scan_folder(root: Path) -> Scan:
    """A user root: class folders, or split folders (train/val/test, any case) of class folders."""
    scan = Scan(root)
    dirs = [p for p in _visible(root) if p.is_dir()]
    split_dirs = [p for p in dirs if p.name.lower() in SPLIT_NAMES]
    if not dirs:
        raise DataError(f"{root}: no class folders found")
    if split_dirs and len(split_dirs) != len(dirs):
        others = [p.name for p in dirs if p not in split_dirs]
        raise DataError(f"{root}: mixes split folders {[p.name for p in split_dirs]} "
                        f"with other folders {others}; use one layout")
    if not split_dirs:
        _scan_class_dirs(scan, root, "all", None)
    for d in split_dirs:
        _scan_class_dirs(scan, d, SPLIT_NAMES[d.name.lower()], None)
    return scan


def scan_manifest(manifest: Path, root: Path | None) -> Scan:
    """CSV with header path,label[,split]; relative paths are relative to root or the CSV's folder."""
    base = root or manifest.parent
    scan = Scan(base)
    _read_manifest(scan, manifest, base, *read_csv(manifest))
    splits = {e.split for e in scan.entries}
    if "all" in splits and len(splits) > 1:
        raise DataError(f"{manifest}: some rows have a split and others do not; fill every row or none")
    return scan


def read_csv(manifest: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line, row)]) of a CSV manifest, or one line naming the file, and the row,
    for what is not one: a missing or special file (a FIFO is never opened: it would block),
    text that is not UTF-8 (utf-8-sig: Excel's byte-order mark is fine), a NUL byte, a field
    over the csv module's limit, a malformed row."""
    if not manifest.exists():
        raise DataError(f"manifest {manifest} does not exist")
    if not manifest.is_file():
        raise DataError(f"manifest {manifest} is not a regular file")
    try:
        raw = manifest.read_bytes()
    except OSError as err:
        raise DataError(f"manifest {manifest} cannot be read ({err.strerror or err})") from None
    if b"\0" in raw:
        line = raw[:raw.index(b"\0")].count(b"\n") + 1
        raise DataError(f"{manifest}:{line}: a NUL byte; a manifest is plain text (re-export it "
                        "as CSV)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        bad = err.object[err.start:err.start + 1]
        raise DataError(f"{manifest}:{line}: not UTF-8 text (byte {err.start} is {bad!r}); save "
                        "it as UTF-8 (with or without BOM)") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict]] = []
    ended = 0  # the line the last good row ended on: a bad one starts right after
    try:
        header = list(reader.fieldnames or [])
        ended = reader.line_num
        for row in reader:
            rows.append((ended + 1, row))
            ended = reader.line_num
    except csv.Error as err:
        raise DataError(f"{manifest}:{ended + 1}: not a CSV row ({err})") from None
    return header, rows


def _read_manifest(scan: Scan, manifest: Path, base: Path, header: list[str],
                   rows: list[tuple[int, dict]]) -> None:
    missing_cols = {"path", "label"} - set(header)
    if missing_cols:
        raise DataError(f"{manifest}: missing column(s) {sorted(missing_cols)}; "
                        f"header is {header}, expected path,label[,split]")
    for line, row in rows:
        split = (row.get("split") or "").strip().lower()
        if split and split not in SPLIT_NAMES:
            raise DataError(f"{manifest}:{line}: split {row['split']!r} is not one of "
                            f"train/val/test")
        label = row["label"] or ""  # as written: fold_labels refuses near-identical spellings
        if not label.strip() or not (row["path"] or "").strip():
            raise DataError(f"{manifest}:{line}: empty path or label")
        path = (base / row["path"].strip()).resolve()
        if not path.is_file():
            what = "not a regular file" if path.exists() else "missing"
            scan.problems.append((str(path), f"listed in {manifest.name}:{line} but {what}"))
            continue
        scan.entries.append(Entry(path, label, SPLIT_NAMES.get(split, "all")))
