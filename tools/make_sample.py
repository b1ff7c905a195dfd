"""Make the embedded sample (benchmark/mribench/data/sample/) from the 7023-image set.

    python tools/make_sample.py /path/to/brain-tumor-mri-7023 [--per-class 8] [--size 64]

Takes the first N files by name of every (split, class) folder, leaving out any file that is an
exact or near duplicate (the leakage audit's 256-bit pHash, within 16 of its bits) of one
already taken, so the sample has no duplicates within or across its splits. Each kept image is
decoded like the pipeline does (grey stays grey, RGB stays RGB), resized to SIZE x SIZE (Lanczos;
the source copy is square) and written as JPEG quality 90 under its original file name. The
README beside the images is written by hand and left alone. Run from the repository root with
`PYTHONPATH=benchmark` (it uses the package's own decoder and perceptual hash).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from mribench.data.audit import near_pairs
from mribench.data.images import decode, perceptual_hash
from mribench.data.registry import SAMPLE_DIR, get

SOURCE = "brain-tumor-mri-7023"
QUALITY = 90


def pick(folder: Path, per_class: int, taken: list[str], near_bits: int = 16) -> list[Path]:
    """The first `per_class` files of `folder` by name that duplicate nothing in `taken`."""
    out = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        phash = perceptual_hash(decode(path))
        pairs = near_pairs(taken + [phash], near_bits)[0] if taken else []
        if any(j == len(taken) for _, j in pairs):  # pairs are (i, j) with i < j
            print(f"  left out {path.name}: duplicate of a file already in the sample")
            continue
        taken.append(phash)
        out.append(path)
        if len(out) == per_class:
            return out
    raise SystemExit(f"{folder}: fewer than {per_class} distinct images")


def make(source: Path, dest: Path, per_class: int, size: int) -> int:
    spec = get(SOURCE)
    taken: list[str] = []
    total = 0
    for split in spec.splits:
        shutil.rmtree(dest / split, ignore_errors=True)
        for cls in sorted(spec.class_map):
            (dest / split / cls).mkdir(parents=True)
            for path in pick(source / split / cls, per_class, taken):
                img = decode(path).resize((size, size), Image.Resampling.LANCZOS)
                target = dest / split / cls / path.name
                img.save(target, "JPEG", quality=QUALITY)
                total += target.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help=f"the {SOURCE} folder (Training/, Testing/)")
    parser.add_argument("--dest", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    total = make(args.source, args.dest, args.per_class, args.size)
    print(f"wrote {args.dest}: {total} bytes of images")


if __name__ == "__main__":
    main()
