"""prepare(): scan, validate every file, split by protocol, audit duplicates, build PreparedData."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mribench.config.schema import DatasetConfig, PreprocessConfig, SplitConfig
from mribench.console import console
from mribench.data import images, provenance, shortcuts
from mribench.data.audit import Record, audit, find_groups, robust_pairs
from mribench.data.locate import find_root
from mribench.data.records import validate
from mribench.data.registry import KNOWN
from mribench.data.samples import DataError, Sample
from mribench.data.scan import Scan, scan_folder, scan_known, scan_manifest
from mribench.data.splits import group_log, split_indices
from mribench.data.train_size import take_per_class

SPLITS = ("train", "val", "test")
SHOWN_PROBLEMS = 20
SLICED = ("source", "size")  # image facts kept as columns of the split and the predictions


@dataclass
class PreparedData:
    name: str
    root: Path
    classes: list[str]
    splits: dict[str, list[Sample]]
    clean_test: list[Sample] | None = None  # test minus cross-split duplicates; None = dedup none
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    audit: dict | None = None
    sha256: dict[Path, str] = field(default_factory=dict, repr=False)
    # one duplicate-group id per test image (same order as splits["test"]): copies of one image
    # share it, an image with no copy is its own group; intervals resample groups
    test_groups: list[str] = field(default_factory=list)
    # per image: its properties and source (data/provenance.py); the shortcut audit of this split
    facts: dict[Path, dict] = field(default_factory=dict, repr=False)
    shortcuts: dict | None = None

    def relative(self, path: Path) -> str:
        """The path relative to the dataset root: the same on every machine that has the set."""
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def split_rows(self) -> list[dict]:
        return [{"path": self.relative(s.path), "label": s.label, "class": self.classes[s.label],
                 "split": split, "sha256": self.sha256.get(s.path, ""),
                 **{k: self.facts[s.path][k] for k in SLICED if s.path in self.facts}}
                for split in SPLITS for s in self.splits[split]]

    def digest(self) -> str:
        """Stable across machines: root-relative paths, labels, splits and file contents."""
        rows = [[r["split"], r["path"], r["class"], r["sha256"]] for r in self.split_rows()]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def scan_dataset(ds: DatasetConfig, data_dir: str | None) -> Scan:
    if ds.manifest:
        scan = scan_manifest(Path(ds.manifest).resolve(), Path(ds.root).resolve() if ds.root else None)
    else:
        root = find_root(ds.name, ds.root, data_dir)
        scan = scan_known(KNOWN[ds.name], root) if ds.name in KNOWN else scan_folder(root)
    scan.fold_labels(ds.name, ds.label_map)
    return scan


def raise_or_skip(name: str, scan: Scan, on_bad_image: str) -> list[tuple[str, str]]:
    """Class problems always stop (skipping cannot make a class whole); file problems stop
    unless on_bad_image is skip, which leaves those files out and lists them."""
    problems = scan.class_problems + (scan.problems if on_bad_image == "error" else [])
    if problems:
        lines = [f"  {path}: {reason}" for path, reason in problems[:SHOWN_PROBLEMS]]
        more = len(problems) - SHOWN_PROBLEMS
        advice = ("Fix or remove them, or set on_bad_image: skip to leave the files out (listed)."
                  if not scan.class_problems else
                  "Fix the class folders (on_bad_image: skip leaves out files, never classes).")
        raise DataError(f"dataset {name!r}: {len(problems)} problem(s) with its files:\n"
                        + "\n".join(lines) + (f"\n  ... and {more} more" if more > 0 else "")
                        + "\n" + advice)
    return sorted(scan.problems)


def usable_records(ds, pre: PreprocessConfig, data_dir: str | None, what: str):
    """Scan a dataset (or external set), keep its subset, validate every image and apply its
    on_bad_image policy: (scan, usable records sorted by path, skipped files). Sorted so that
    what follows depends on the seed, not on the order of a folder listing or a CSV."""
    scan = scan_dataset(ds, data_dir)
    scan.subset(ds.subset_per_class)
    records = validate(scan, pre)
    skipped = raise_or_skip(ds.name, scan, ds.on_bad_image)
    if not records:
        raise DataError(f"{what}: no usable images under {scan.root}")
    records.sort(key=lambda r: str(r.path))
    return scan, records, skipped


def prepare(ds: DatasetConfig, split: SplitConfig, pre: PreprocessConfig, *, seed: int,
            fold: int | None, data_dir: str | None, cache_dir: str | None = None) -> PreparedData:
    images.set_cache_dir(cache_dir)
    scan, records, skipped = usable_records(ds, pre, data_dir, f"dataset {ds.name!r}")
    classes = sorted({r.cls for r in records})
    labels = [classes.index(r.cls) for r in records]
    robust, thresholds = (robust_pairs(records, ds.copy_match, console.print)
                          if "robust" in (ds.dedup, split.groups) else (None, {}))
    groups = find_groups([r.sha for r in records], [r.phash for r in records], ds.near_bits, robust)
    kept_together = groups[split.groups] if split.groups != "none" else []
    facts = provenance.describe(ds.name, records, data_dir)
    held = provenance.held_out(facts, split.hold_out) if split.hold_out else None
    if held:
        provenance.check_held_out(ds.name, records, held)
    parts = split_indices(labels, [r.split for r in records], split, seed=seed, fold=fold, name=ds.name,
                          groups=kept_together, held=held)
    for name, idx in parts.items():
        if not idx:
            raise DataError(f"dataset {ds.name!r}: split {name!r} is empty with {len(records)} files; "
                            "use more images or other fractions")
    split_of = {i: name for name, idx in parts.items() for i in idx}
    result = audit([Record(r.path, r.cls, split_of[i], r.sha, r.phash) for i, r in enumerate(records)],
                   ds.near_bits, groups, thresholds)
    sample = [Sample(r.path, labels[i]) for i, r in enumerate(records)]
    # A smaller training set is taken after the split and the audit: val, test and the clean
    # test (no copy anywhere in the whole training side) are the same for every size.
    used = {**parts, "train": take_per_class(parts["train"], labels, kept_together,
                                             ds.train_per_class, seed)}
    splits = {name: [sample[i] for i in idx] for name, idx in used.items()}
    clean, leaked = None, set()
    if ds.dedup != "none":
        leaked = result.leaked_test(ds.dedup)
        clean = [sample[i] for i in parts["test"] if i not in leaked]
    summary = {**result.summary(), **{f"n_{k}": len(v) for k, v in splits.items()},
               "n_clean_test": len(clean) if clean is not None else len(splits["test"]),
               "n_skipped": len(skipped), "split_group_kind": split.groups,
               **({"n_train_available": len(parts["train"])}
                  if ds.train_per_class is not None else {}),
               **group_log(parts, kept_together)}
    test_groups = duplicate_groups(result.groups, group_kind(ds.dedup), parts["test"],
                                   [str(r.path.relative_to(scan.root)) if r.path.is_relative_to(
                                       scan.root) else str(r.path) for r in records])
    summary |= {"test_group_kind": group_kind(ds.dedup), "n_test_groups": len(set(test_groups)),
                **({"n_clean_test_groups": len({g for g, i in zip(test_groups, parts["test"])
                                                if i not in leaked})}
                   if clean is not None else {})}
    # the metadata-only baseline of this very split: trained on its train and val, scored on
    # its test (and clean test); no cross-validation, which `mribench data audit` adds
    in_clean = {s.path for s in clean} if clean is not None else None
    short = shortcuts.audit(facts, [r.cls for r in records], [split_of[i] for i in range(len(records))],
                            ds.name, seed, None if in_clean is None else
                            [r.path in in_clean for r in records], cross_validate=False)
    return PreparedData(name=ds.name, root=scan.root, classes=classes, splits=splits, clean_test=clean,
                        skipped=skipped, audit=summary, sha256={r.path: r.sha for r in records},
                        test_groups=test_groups, facts={r.path: f for r, f in zip(records, facts)},
                        shortcuts=short)


def group_kind(dedup: str) -> str:
    """Which duplicate groups cluster the test images: the dataset's declared dedup kind;
    with dedup none the exact copies (byte-identical files are the same image whatever the
    setting)."""
    return "exact" if dedup == "none" else dedup


def duplicate_groups(groups: dict[str, list[list[int]]], kind: str, test: list[int],
                     names: list[str]) -> list[str]:
    """A group id per test record (in `test` order): the name of the first test file of its
    duplicate group of `kind` (any kind the audit found: exact, near, and what is added), or
    its own name when it has no copy. Groups connect through train/val copies too; ids are
    file names, so two runs on the same split pair them on any machine."""
    if kind not in groups:
        raise ValueError(f"duplicate groups of kind {kind!r} were not computed "
                         f"(have: {', '.join(groups)})")
    in_test = set(test)
    first = {}
    for group in groups[kind]:
        members = sorted((names[i] for i in group if i in in_test))
        for i in group:
            if i in in_test:
                first[i] = members[0]
    return [first.get(i, names[i]) for i in test]
