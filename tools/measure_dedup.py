"""Measure `dedup: robust` (mribench.data.copies) on the real sets; the figures of
docs/data-and-weights.md ("Robust copies") come from here.

    PYTHONPATH=benchmark python tools/measure_dedup.py synthetic brain-tumor-mri-7023 --n 200
    PYTHONPATH=benchmark python tools/measure_dedup.py adjacent brain-tumor-mri-7023
    PYTHONPATH=benchmark python tools/measure_dedup.py official brain-tumor-mri-7023 --pairs out/
    PYTHONPATH=benchmark python tools/measure_dedup.py figure   # docs/img/robust_copies_pairs.jpg

synthetic: n random images of the set each get five copies (a crop of 5-20 % of the side at a
random place, a rescale by 0.8-1.25, a rotation by -5..5 degrees, a JPEG re-encode at quality
60-95, and all four at once); each copy goes through the candidate stage against the whole set
and its candidates are verified; found = verified against its original (or a near copy of it).
official also counts the pairs verified between images of different classes that are not near
copies (distinct images flagged: one tumour class is not another's slice).
adjacent: consecutive file numbers of one class folder (the publisher numbered the slices of a
patient in a row), each pair verified directly: how close adjacent slices come to a copy.
official: the official Training/Testing split, near vs robust: test files with a copy in
train/val, and side-by-side PNGs of the test files only robust finds (with --pairs).

JSON on stdout, progress on stderr. Data from $BENCHMARK_DATA_DIR; caches in --cache-dir.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mribench.config.copies import CopyMatchConfig
from mribench.data import copies, images
from mribench.data.audit import Record, audit, find_groups, near_pairs, robust_pairs
from mribench.data.decode import decode, perceptual_hash, to_mode
from mribench.data.locate import find_root
from mribench.data.preparation import validate
from mribench.data.registry import KNOWN
from mribench.data.scan import scan_known

KINDS = ("crop", "rescale", "rotate", "jpeg", "all")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def records_of(name: str) -> list[Record]:
    scan = scan_known(KNOWN[name], find_root(name, None, None))
    return sorted(validate(scan, None), key=lambda r: str(r.path))


def transform(img: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, int | None]:
    """One copy of `img` as the issue names them; the JPEG quality when it is re-encoded."""
    if kind in ("crop", "all"):
        cut = rng.uniform(0.05, 0.20)
        w, h = img.size
        cw, ch = round(w * (1 - cut)), round(h * (1 - cut))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.crop((x, y, x + cw, y + ch))
    if kind in ("rescale", "all"):
        f = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        img = img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.BICUBIC)
    if kind in ("rotate", "all"):
        img = img.rotate(float(rng.uniform(-5, 5)), resample=Image.Resampling.BILINEAR)
    quality = int(rng.integers(60, 96)) if kind in ("jpeg", "all") else None
    return img, quality


def synthetic(args) -> dict:
    """Each copy is queried against the whole set, as the audit's candidate stage does (its
    `candidates` most similar originals, by the same window similarity) and those pairs are
    verified; found = a verified copy pair with its original or with an image in the
    original's near group. A pair is a candidate as in the audit: the original is among the
    copy's `candidates` most similar originals, or the copy would be among the original's."""
    originals = records_of(args.dataset)[:args.limit]
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(originals), args.n, replace=False)
    match = CopyMatchConfig(**({"candidates": args.candidates} if args.candidates else {}))
    start = time.process_time()
    say(f"windows of {len(originals)} originals")
    grey = {}

    def grey_of(path):
        if path not in grey:
            grey[path] = copies.grey(decode(path))
        return grey[path]

    windows = np.stack([copies.vectors(copies.grey(decode(r.path))) for r in originals])
    flat = windows.reshape(-1, windows.shape[2])
    near, _ = near_pairs([r.phash for r in originals], 16)
    hashes = np.stack([_words(r.phash) for r in originals])
    mates = {i: {i} for i in range(len(originals))}
    for i, j in near.tolist():
        mates[i].add(j)
        mates[j].add(i)
    found = {kind: {"robust": 0, "near": 0} for kind in KINDS}
    misses: list[dict] = []
    say(f"{args.n} originals x {len(KINDS)} copies, {match.candidates} candidates each")
    for i in chosen.tolist():
        src = originals[i]
        img = decode(src.path)
        for kind in KINDS:
            out, quality = transform(img, kind, rng)
            if quality is not None:
                buf = io.BytesIO()
                out.convert("L" if img.mode == "L" else "RGB").save(buf, "JPEG", quality=quality)
                out = Image.open(io.BytesIO(buf.getvalue()))
            phash = perceptual_hash(to_mode(out))
            bits = np.bitwise_count(hashes ^ _words(phash)).sum(axis=1)
            found[kind]["near"] += int(any(bits[j] <= 16 for j in mates[i]))
            g = copies.grey(to_mode(out))
            w = copies.vectors(g)
            # as copies.candidate_pairs: the copy's frame against every original's windows
            # (its own list), and each mate's frame against the copy's windows (the mate's list)
            own = (flat @ w[0]).reshape(len(originals), -1).max(axis=1)
            listed = set(np.argpartition(-own, match.candidates - 1)[:match.candidates].tolist())
            fc = copies.features(g)
            candidate = verified = False
            for j in sorted(mates[i]):
                theirs = (flat @ windows[j, 0]).reshape(len(originals), -1).max(axis=1)
                theirs[j] = -np.inf
                kth = np.partition(theirs, len(theirs) - match.candidates)[-match.candidates]
                if j in listed or float((w @ windows[j, 0]).max()) > kth:
                    candidate = True
                    verified = verified or copies.verify(g, grey_of(originals[j].path), fc).is_copy(
                        match.min_inliers, match.min_correlation)
            found[kind]["robust"] += int(verified)
            if not verified:
                direct = copies.verify(g, grey_of(src.path), fc)
                misses.append({"kind": kind, "original": src.path.name, "was_candidate": candidate,
                               "direct_correlation": round(direct.correlation, 3),
                               "direct_inliers": direct.inliers, "direct_scale": round(direct.scale, 3)})
    cpu = time.process_time() - start
    recall = {kind: {what: round(v / args.n, 4) for what, v in found[kind].items()} for kind in KINDS}
    total = sum(found[k]["robust"] for k in KINDS) / (args.n * len(KINDS))
    return {"dataset": args.dataset, "images": len(originals), "copies_per_kind": args.n,
            "recall": recall, "recall_all_kinds": round(total, 4), "cpu_seconds": round(cpu, 1),
            "misses": misses, **{f"copy_match_{k}": v for k, v in match.model_dump().items()}}


def _words(phash: str) -> np.ndarray:
    return np.array([int(phash[k:k + 16], 16) for k in range(0, len(phash), 16)], dtype=np.uint64)


def distinct(originals: list[Record], pairs: np.ndarray) -> dict:
    """Verified pairs among the set's own images whose classes differ and whose hashes are not
    near: images of distinct tumours (or none) called copies."""
    n = len(originals)
    near, _ = near_pairs([r.phash for r in originals], 16)
    near_set = {tuple(p) for p in near.tolist()}
    flagged = set()
    for i, j in pairs.tolist():
        if i < n and j < n and originals[i].cls != originals[j].cls and (i, j) not in near_set:
            flagged.update((i, j))
    return {"cross_class_flagged_images": len(flagged),
            "cross_class_flagged_fraction": round(len(flagged) / n, 5),
            "cross_class_flagged_examples": sorted(originals[i].path.name for i in flagged)[:20]}


def adjacent(args) -> dict:
    """Consecutive file numbers in one folder, verified directly (not via candidates)."""
    records = records_of(args.dataset)
    by_name = {(r.path.parent, r.path.name): r for r in records}
    near, _ = near_pairs([r.phash for r in records], 16)
    index = {r.path: k for k, r in enumerate(records)}
    near_set = {tuple(p) for p in near.tolist()}
    pairs = []
    for r in records:
        m = re.match(r"(.*?)(\d+)(\.\w+)$", r.path.name)
        if not m:
            continue
        following = f"{m.group(1)}{int(m.group(2)) + 1:0{len(m.group(2))}d}{m.group(3)}"
        nxt = by_name.get((r.path.parent, following))
        if nxt is not None and (index[r.path], index[nxt.path]) not in near_set:
            pairs.append((r, nxt))
    rng = np.random.default_rng(args.seed)
    pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), min(args.n, len(pairs)), replace=False))]
    match = CopyMatchConfig()
    scores = []
    for a, b in pairs:
        s = copies.verify(copies.grey(decode(a.path)), copies.grey(decode(b.path)))
        scores.append((a.path.name, b.path.name, s))
    aligned = [(a, b, s) for a, b, s in scores if s.is_copy(match.min_inliers, 0.0)]
    corr = np.array([s.correlation for _, _, s in aligned])
    edges = [0, 0.5, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 1.0001]
    return {"dataset": args.dataset, "pairs_checked": len(scores),
            "aligned_pairs": len(aligned),
            "aligned_correlation_histogram": {f"{lo}-{hi}": int(c) for lo, hi, c in
                                              zip(edges, edges[1:], np.histogram(corr, bins=edges)[0])},
            "aligned_correlation_quantiles": {q: round(float(np.quantile(corr, q)), 3)
                                              for q in (0.5, 0.9, 0.95, 0.99)} if len(corr) else {},
            "called_copies": [[a, b, round(s.correlation, 3), s.inliers] for a, b, s in aligned
                              if s.correlation >= match.min_correlation]}


def official(args) -> dict:
    records = records_of(args.dataset)
    start = time.process_time()
    pairs, thresholds = robust_pairs(records, CopyMatchConfig(), say)
    cpu = time.process_time() - start
    groups = find_groups([r.sha for r in records], [r.phash for r in records], 16, pairs)
    result = audit(records, 16, groups, thresholds)
    near, robust = result.leaked_test("near"), result.leaked_test("robust")
    extra = sorted(robust - near, key=lambda i: str(records[i].path))
    out = {"dataset": args.dataset, "files": len(records),
           "test_files": sum(r.split == "test" for r in records),
           "test_leaked_near": len(near), "test_leaked_robust": len(robust), "extra": len(extra),
           "robust_cpu_seconds": round(cpu, 1), **thresholds,
           "summary": result.summary(), **distinct(records, pairs)}
    if args.pairs:
        out["shown"] = side_by_side(records, pairs, extra, Path(args.pairs), args.show, args.seed)
    return out


def side_by_side(records, pairs, extra, folder: Path, show: int, seed: int) -> list[dict]:
    """PNGs of test file | its verified train/val partner, for `show` random extra test files."""
    folder.mkdir(parents=True, exist_ok=True)
    partner: dict[int, int] = {}
    for i, j in pairs.tolist():
        for a, b in ((i, j), (j, i)):
            if records[a].split == "test" and records[b].split != "test":
                partner.setdefault(a, b)
    picked = [i for i in extra if i in partner]
    rng = np.random.default_rng(seed)
    picked = [picked[k] for k in sorted(rng.choice(len(picked), min(show, len(picked)), replace=False))]
    shown = []
    for k, i in enumerate(picked):
        j = partner[i]
        a, b = copies.grey(decode(records[i].path)), copies.grey(decode(records[j].path))
        s = copies.verify(a, b)
        tile = Image.new("L", (2 * copies.SIDE + 8, copies.SIDE + 18), 255)
        for col, g in enumerate((a, b)):
            tile.paste(Image.fromarray(g), (col * (copies.SIDE + 8), 18))
        ImageDraw.Draw(tile).text((2, 2), f"{records[i].path.name} | {records[j].path.name}  "
                                  f"r={s.correlation:.3f} inliers={s.inliers} scale={s.scale:.2f} "
                                  f"angle={s.angle:.1f}", fill=0)
        name = folder / f"{k:02d}-{records[i].path.stem}.png"
        tile.save(name)
        shown.append({"test": records[i].path.name, "train": records[j].path.name, "png": str(name),
                      "correlation": round(s.correlation, 3), "inliers": s.inliers,
                      "scale": round(s.scale, 3), "angle": round(s.angle, 2)})
    return shown


# the pairs of docs/img/robust_copies_pairs.jpg: (set, test file, train file, what was seen)
FIGURE = [
    ("brain-tumor-classification-3264", "Testing/glioma_tumor/image(52).jpg",
     "Training/meningioma_tumor/m1(120).jpg", "3264: re-cropped, test label glioma, train label meningioma"),
    ("brain-tumor-classification-3264", "Testing/meningioma_tumor/image(123).jpg",
     "Training/meningioma_tumor/m1(106).jpg", "3264: re-cropped and rescaled"),
    ("brain-tumor-classification-3264", "Testing/pituitary_tumor/image(34).jpg",
     "Training/pituitary_tumor/p (136).jpg", "3264: re-cropped"),
    ("brain-tumor-mri-7023", "Testing/meningioma/Te-me_0014.jpg", "Training/meningioma/Tr-me_0181.jpg",
     "7023: re-cropped and rescaled"),
    ("brain-tumor-mri-7023", "Testing/notumor/Te-no_0325.jpg", "Training/notumor/Tr-no_0871.jpg",
     "7023: same slice, other processing"),
    ("brain-tumor-mri-7023", "Testing/pituitary/Te-pi_0010.jpg", "Training/pituitary/Tr-pi_0548.jpg",
     "7023: borderline, likely adjacent slice"),
]


def figure(args) -> dict:
    """docs/img/robust_copies_pairs.jpg: six extra pairs as 150-px thumbnails."""
    import mribench

    side, gap, cap = 150, 8, 26
    width, height = 2 * (2 * side + gap) + 3 * gap, 3 * (side + cap) + 22
    fig = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(fig)
    rows = []
    for k, (name, test, train, text) in enumerate(FIGURE):
        root = find_root(name, None, None)
        ga, gb = copies.grey(decode(root / test)), copies.grey(decode(root / train))
        s = copies.verify(ga, gb)
        x0, y0 = gap + (k % 2) * (2 * side + 2 * gap), (k // 2) * (side + cap)
        draw.text((x0, y0 + 2), text, fill=0)
        draw.text((x0, y0 + 13), f"{Path(test).name} | {Path(train).name}  r={s.correlation:.3f}, "
                  f"scale {s.scale:.2f}", fill=0)
        for col, g in enumerate((ga, gb)):
            thumb = Image.fromarray(g)
            thumb.thumbnail((side, side))
            fig.paste(thumb, (x0 + col * (side + gap), y0 + cap))
        rows.append({"test": test, "train": train, "correlation": round(s.correlation, 3)})
    draw.text((gap, height - 16), f"2026-12-07, mribench {mribench.__version__}, dedup: robust defaults; "
              "test image left, train image right; 2-core x86_64 CPU dev box (shared)", fill=0)
    fig.save(args.out, quality=85, optimize=True)
    return {"figure": args.out, "pairs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["synthetic", "adjacent", "official", "figure"])
    parser.add_argument("dataset", nargs="?", default="brain-tumor-mri-7023",
                        choices=sorted(n for n in KNOWN if not KNOWN[n].bundled))
    parser.add_argument("--out", default="docs/img/robust_copies_pairs.jpg", help="figure: the JPEG")
    parser.add_argument("--n", type=int, default=200, help="synthetic: originals; adjacent: pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, help="synthetic: copy_match.candidates (default 8)")
    parser.add_argument("--limit", type=int, help="synthetic: only the first N images (a quick try)")
    parser.add_argument("--pairs", help="official: folder for side-by-side PNGs of extra copies")
    parser.add_argument("--show", type=int, default=12, help="official: how many PNGs")
    parser.add_argument("--cache-dir", help="hash and copy caches (default: as mribench)")
    args = parser.parse_args()
    images.set_cache_dir(args.cache_dir)
    result = {"synthetic": synthetic, "adjacent": adjacent, "official": official,
              "figure": figure}[args.what](args)
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
