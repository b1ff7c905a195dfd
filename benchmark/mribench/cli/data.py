"""`mribench data list | audit | fetch`: argparse wiring and table output, no data logic.

Errors (unknown names, data problems) are UserErrors: `mribench.cli.main` prints their one line
and exits 2, as for every other command."""
from __future__ import annotations

import csv
import time
from pathlib import Path

from mribench.console import console, emit_table
from mribench.data.registry import KNOWN, count_files, get


def _common(p) -> None:
    p.add_argument("--json", action="store_true", help="print the table as JSON on stdout")
    p.add_argument("--data-dir", help="folder holding the datasets (default: $BENCHMARK_DATA_DIR, ./data)")


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="datasets: list, leakage audit, download")
    sub = data.add_subparsers(dest="data_command", required=True)
    p = sub.add_parser("list", help="the known datasets, where they are found, whether complete")
    _common(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("audit", help="exact and near duplicates within and across splits, and "
                       "shortcuts: how well properties that are not anatomy predict the label")
    p.add_argument("dataset", help="a known dataset name, a folder of class (or split) folders, "
                   "or a CSV manifest (path,label[,split])")
    p.add_argument("--near-bits", type=int, default=16,
                   help="near duplicates differ in at most this many of the 256 bits of their "
                        "perceptual hash (0-256; default 16); the sweep table shows 0, 8, 16, 24, 32")
    p.add_argument("--only", choices=("duplicates", "shortcuts"),
                   help="print one of the two audits (default: both; the shortcut audit measures "
                        "how well file and intensity properties alone predict the label)")
    p.add_argument("--dedup", choices=["near", "robust"], default="near",
                   help="robust: also look for cropped, rescaled, rotated or re-encoded copies "
                        "(minutes on a large set; cached) and count how many more than near")
    p.add_argument("--copy-match", metavar="KEY=VALUE", action="append", default=[],
                   help="a robust matcher threshold, as datasets[].copy_match in a suite "
                        "(candidates, min_inliers, min_correlation); repeatable")
    p.add_argument("--csv", help="write every duplicate group, one row per file, to this CSV")
    p.add_argument("--cache-dir", help="hash cache folder (default: $BENCHMARK_CACHE_DIR, ./.cache/mribench)")
    _common(p)
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("fetch", help="download a known dataset and arrange its layout")
    p.add_argument("name", help=f"one of {sorted(KNOWN)}")
    p.add_argument("--dest", help="target folder (default: --data-dir, $BENCHMARK_DATA_DIR, ./data)")
    _common(p)
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("artefacts", help="one image under every MRI artefact at every severity "
                       "(a grid PNG, the suites' robustness block)")
    p.add_argument("image", help="an image file (JPEG, PNG, ...)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--size", type=int, default=128, help="side in pixels it is decoded to, as a "
                   "suite's preprocess.image_size (default 128)")
    p.add_argument("--artefacts", help="comma-separated subset of the artefacts (default: all)")
    p.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (default 100)")
    p.add_argument("--json", action="store_true", help="print the severity table as JSON on stdout")
    p.set_defaults(func=cmd_artefacts)


def cmd_list(args) -> int:
    from mribench.data.locate import where

    rows = []
    for spec in KNOWN.values():
        found = where(spec.name, args.data_dir)
        counts = count_files(spec, found) if found else {}
        rows.append({"name": spec.name, "classes": ", ".join(spec.classes),
                     "path": str(found.resolve()) if found else None,
                     "files": ", ".join(f"{s} {counts.get(s, 0)}/{n}" for s, n in spec.expected.items()),
                     "complete": counts == spec.expected, "counts": counts, "expected": spec.expected,
                     "licence": spec.licence, "source": spec.source})
    emit_table(rows, "Known datasets", args.json,
               columns=["name", "classes", "path", "files", "complete", "licence", "source"])
    return 0


def cmd_audit(args) -> int:
    from rich.progress import Progress

    from mribench.data import images
    from mribench.data.audit import HASH_BITS, KINDS, SWEEP_BITS, audit, sweep
    from mribench.data.locate import find_root
    from mribench.data.preparation import validate
    from mribench.data.samples import DataError
    from mribench.data.scan import scan_folder, scan_known, scan_manifest

    if args.csv:  # where the groups go, before the scan and the hashing
        from mribench.outputs import file_target

        file_target(args.csv, "--csv")
    if not 0 <= args.near_bits <= HASH_BITS:
        raise DataError(f"--near-bits must be 0..{HASH_BITS}, got {args.near_bits}")
    images.set_cache_dir(args.cache_dir)
    if args.dataset in KNOWN:
        scan = scan_known(KNOWN[args.dataset], find_root(args.dataset, None, args.data_dir))
    elif Path(args.dataset).is_dir():
        scan = scan_folder(Path(args.dataset).resolve())
    elif Path(args.dataset).suffix.lower() == ".csv" and Path(args.dataset).is_file():
        scan = scan_manifest(Path(args.dataset).resolve(), None)
    else:
        raise DataError(f"{args.dataset!r} is neither a known dataset {sorted(KNOWN)}, a folder, "
                        "nor a CSV manifest")
    start = time.perf_counter()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"hashing {len(scan.entries)} files", total=len(scan.entries))
        records = validate(scan, None, progress=lambda: bar.advance(task))
    if args.only == "shortcuts":
        return _shortcuts(args, records, start)
    robust, thresholds = None, {}
    if args.dedup == "robust":
        from mribench.data.audit import find_groups, robust_pairs

        robust, thresholds = robust_pairs(records, _copy_match(args.copy_match), console.print)
        groups = find_groups([r.sha for r in records], [r.phash for r in records], args.near_bits,
                             robust)
        result = audit(records, args.near_bits, groups, thresholds)
    else:
        result = audit(records, args.near_bits)
    by_threshold = sweep(records, tuple(sorted({*SWEEP_BITS, args.near_bits})))
    seconds = round(time.perf_counter() - start, 1)
    summary = result.summary()
    rows = [{"kind": kind, **{k.removeprefix(f"{kind}_"): v for k, v in summary.items()
                              if k.startswith(f"{kind}_") and k != "near_bits"}}
            for kind in KINDS if kind in result.groups]
    if args.csv:
        group_rows = result.group_rows(scan.root)
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(group_rows[0]) if group_rows else ["kind"])
            writer.writeheader()
            writer.writerows(group_rows)
    splits = {s: sum(r.split == s for r in records) for s in sorted({r.split for r in records})}
    extra = {"dataset": args.dataset, "root": str(scan.root), "files": summary["files"],
             "splits": splits, "near_bits": args.near_bits,
             "unreadable": [f"{p}: {r}" for p, r in scan.class_problems + scan.problems], "seconds": seconds,
             "csv": args.csv, **thresholds}
    short = None if args.only == "duplicates" else _shortcut_audit(args, records)
    if robust is not None:
        extra["robust_more_than_near"] = {
            k: summary[f"robust_{k}"] - summary[f"near_{k}"]
            for k in ("test_files_leaked", "redundant_files", "cross_split_groups")}
    if args.json:
        emit_table(rows, f"Duplicate audit: {args.dataset}", True,
                   extra={**extra, "near_by_threshold": by_threshold,
                          **({"shortcuts": short} if short else {})})
        return 0
    emit_table(rows, f"Duplicate audit: {args.dataset} (near: at most {args.near_bits} of 256 "
               "hash bits differ)", False, extra=extra)
    if robust is not None:
        more = extra["robust_more_than_near"]
        console.print(f"robust finds {more['test_files_leaked']} more test files with a copy in "
                      f"train/val than near, {more['redundant_files']} more redundant files "
                      f"(copy_match: {', '.join(f'{k[11:]} {v}' for k, v in thresholds.items())})")
    emit_table(by_threshold, "Near duplicates by threshold (differing bits of the 256-bit "
               "perceptual hash; 0 = same hash)", False,
               columns=["near_bits", "groups", "redundant_files", "cross_split_groups",
                        "test_files_leaked", "label_conflict_groups"])
    if short:
        _print_shortcuts(args.dataset, short)
    return 0


def _shortcut_audit(args, records) -> dict:
    """The shortcut audit of these records (data/shortcuts.py); its verdict also on stderr."""
    from mribench.data import provenance, shortcuts
    from mribench.data.store import warn

    start = time.perf_counter()
    rows = provenance.describe(args.dataset, records, args.data_dir)
    result = shortcuts.audit(rows, [r.cls for r in records], [r.split for r in records],
                             args.dataset)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if result["warning"]:
        warn(result["warning"])
    return result


def _shortcuts(args, records, start: float) -> int:
    """`--only shortcuts`: the baseline rows as the table, everything else beside it."""
    short = _shortcut_audit(args, records)
    if args.json:
        emit_table(_baseline_rows(short), f"Shortcut audit: {args.dataset}", True,
                   extra={"dataset": args.dataset, **short,
                          "seconds": round(time.perf_counter() - start, 1)})
        return 0
    _print_shortcuts(args.dataset, short)
    return 0


def _baseline_rows(short: dict) -> list[dict]:
    base, rows = short["baseline"], []
    for key, what in (("cv", f"cross-validated on train ({base.get('cv', {}).get('folds')} folds)"),
                      ("test", "trained on train, scored on test")):
        if key in base:
            s = base[key]
            rows.append({"evaluated": what, "n": s["n"], "accuracy": s["accuracy"],
                         "accuracy_ci95": s["accuracy_ci95"], "chance_accuracy": s["chance_accuracy"],
                         "balanced_accuracy": s["balanced_accuracy"],
                         "chance_balanced_accuracy": base["chance_balanced_accuracy"]})
    return rows


def _print_shortcuts(name: str, short: dict) -> None:
    emit_table(_baseline_rows(short), f"Shortcut audit: {name}: metadata-only baseline (random "
               "forest on file and intensity properties) beside chance", False,
               extra={"most informative": ", ".join(short["baseline"].get("top_properties", [])) or "-"})
    emit_table(short["distributions"], "Property distributions per class and side (train = "
               "train+val folders; all = no official split)", False)
    emit_table(short["numeric"], "Numeric properties per class and side: median [10th-90th "
               "percentile]", False)
    if short["separations"]:
        emit_table(short["separations"][:12], "Within a class, train vs test (largest first; "
                   f"{short['separates']} or more separates)", False,
                   columns=["class", "property", "n_train", "n_test", "distance", "measure", "detail"])
    emit_table([{"verdict": short["warning"] or
                 f"no shortcut found: the baseline is within {short['margin']:.2f} of chance or "
                 "not clear of the majority share, and no property separates train from test"}],
               "Shortcut verdict", False, extra={"seconds": short["seconds"]})


def cmd_fetch(args) -> int:
    from mribench.data.fetch import fetch
    from mribench.data.locate import candidate_dirs

    spec = get(args.name)
    if spec.bundled:
        emit_table([{"dataset": spec.name, "path": str(spec.bundled),
                     "status": "ships with the package", **count_files(spec, spec.bundled)}],
                   f"Nothing to fetch for {spec.name}", args.json)
        return 0
    dest = Path(args.dest or next(str(base) for _, base in candidate_dirs(args.data_dir, False)))
    from mribench.outputs import folder_target

    folder_target(dest, "--dest")  # before the download
    console.print(f"fetching {spec.name} from {spec.url or 'Kaggle ' + str(spec.kaggle)} into {dest}")
    row = fetch(spec, dest)
    emit_table([row], f"Fetched {spec.name}", args.json)
    return 0 if row["status"] in ("complete", "already present") else 1


def cmd_artefacts(args) -> int:
    """The artefact grid of one image; the severity table on stdout (robustness/severities.py)."""
    from mribench.data.samples import DataError
    from mribench.robustness.severities import ARTEFACTS, table_rows

    chosen = args.artefacts.split(",") if args.artefacts else list(ARTEFACTS)
    unknown = [a for a in chosen if a not in ARTEFACTS]
    if unknown:
        raise DataError(f"--artefacts: unknown {unknown}; known: {list(ARTEFACTS)}")
    if not 8 <= args.size <= 2048:
        raise DataError(f"--size must be 8..2048, got {args.size}")
    from mribench.outputs import file_target

    file_target(args.out, "--out")
    image = Path(args.image)
    if not image.is_file():
        raise DataError(f"{image}: no such file" if not image.exists() else
                        f"{image}: not a regular file")
    from mribench.config.schema import PreprocessConfig
    from mribench.data.decode import decode, to_pixels
    from mribench.files import file_sha256
    from mribench.robustness.grid import artefact_grid

    try:
        pixels = to_pixels(decode(image), PreprocessConfig(image_size=args.size))
    except Exception as err:  # noqa: BLE001 - any decoder failure is the file's problem
        raise DataError(f"{image}: cannot be decoded as an image ({err})") from err
    # seeded by the file's sha256, as in a suite: the same pixels every model is scored on
    fig = artefact_grid(pixels, file_sha256(image), tuple(chosen), title=f"{image.name}, {args.size} px")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_png(fig, out, args.dpi, grey=bool((pixels == pixels[..., :1]).all()))
    console.print(f"wrote {out}")
    rows = [r for r in table_rows() if r["artefact"] in chosen]
    emit_table(rows, "severity table (TorchIO parameters)", args.json)
    return 0


def _save_png(fig, out: Path, dpi: int, grey: bool) -> None:
    """A grey image's grid as an 8-bit grey PNG: a third of the RGBA file's size."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    with Image.open(buf) as png:
        (png.convert("L") if grey else png.convert("RGB")).save(out, optimize=True)


def _copy_match(pairs: list[str]):
    """--copy-match KEY=VALUE options as a validated CopyMatchConfig (bad ones: one line)."""
    from pydantic import ValidationError

    from mribench.config.copies import CopyMatchConfig
    from mribench.data.samples import DataError

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise DataError(f"--copy-match {pair!r}: expected KEY=VALUE, e.g. min_correlation=0.95")
        values[key.strip()] = value.strip()
    try:
        return CopyMatchConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        raise DataError(f"--copy-match {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
