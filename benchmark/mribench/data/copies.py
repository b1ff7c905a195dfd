"""Robust copies: the same image after a crop, a rescale, a small rotation or a re-encode.

A perceptual hash of the whole frame does not survive a crop (every pixel moves), so this
matcher works in two stages, as near-duplicate search usually does:

1. Candidates (cheap): every image's whole frame and 54 crops of it (sides 95 % to 80 %, every
   5 % of the side) are shrunk to 16x16 zero-mean unit vectors; a pair's similarity is the
   best cosine between one image's whole frame and any window of the other, so a copy cut
   from its original by up to 20 % meets it within 2.5 % of position and size (and a rescale
   is nothing at 16x16). Each image's `candidates` most similar others are the only pairs
   verified (7023 images: about 7023 x candidates pairs, not 24.6 M).
2. Verification (geometry, OpenCV): ORB keypoints matched between the two images, a similarity
   transform (rotation, one scale, shift) fitted by RANSAC (`cv2.estimateAffinePartial2D`),
   and a pixel-level check: image A warped onto B, the Pearson correlation of the two over the
   head pixels they share. A pair is a copy when the fit has at least `min_inliers` inliers,
   a scale and angle a re-crop can give, and a correlation of at least `min_correlation`.

Adjacent slices of one patient share the skull outline and much of the anatomy, so they pass
the candidate stage and often the fit; what separates them from copies is the correlation
(measured in docs/robust-copies.md): `min_correlation` sits above where adjacent slices
reach, and lowering it is how a user asks for them to count as copies.

The candidate pairs of a set of images (by content hash) and every verified pair's scores are
cached in the cache folder, like the perceptual hashes (`copy-candidates-v1-<digest>.json`,
`copy-scores-v1.json`): a warm cache decodes nothing, and thresholds can change without
recomputation.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps

from mribench.data import store
from mribench.data.decode import decode
from mribench.data.locate import cache_root
from mribench.files import atomic_write

# cache files, renamed whenever the candidate vectors or the verification change
CANDIDATE_FILE = "copy-candidates-v1-{}.json"
SCORE_FILE = "copy-scores-v1.json"
SIDE = 256  # images are matched at this many pixels on their longer side
VECTOR_SIDE = 16
BASE_SIDE = 80  # windows are cut from the image shrunk to this (5 pixels per vector cell)
HEAD_LEVEL = 0.1  # of the autocontrasted range: brighter pixels are head, darker background
ORB_FEATURES = 400
MAX_SCALE = 1.6  # a copy's scale factor lies in [1/MAX_SCALE, MAX_SCALE]
MAX_ANGLE = 15.0  # degrees


@dataclass(frozen=True)
class Scores:
    """What the verification measured for one pair (inliers 0: no transform found)."""
    inliers: int
    scale: float
    angle: float
    correlation: float

    def is_copy(self, min_inliers: int, min_correlation: float) -> bool:
        return (self.inliers >= min_inliers and 1 / MAX_SCALE <= self.scale <= MAX_SCALE
                and abs(self.angle) <= MAX_ANGLE and self.correlation >= min_correlation)


def grey(img: Image.Image) -> np.ndarray:
    """The image as contrast-stretched grey uint8, SIDE pixels on its longer side: a small
    image is enlarged (ORB finds too few corners on a 64-pixel slice), and an original and its
    rescaled copy are compared at one resolution."""
    img = ImageOps.autocontrast(img.convert("L"), cutoff=1)
    scale = SIDE / max(img.size)
    if scale != 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def _windows(step: float = 0.05, sides: tuple[float, ...] = (0.95, 0.9, 0.85, 0.8)):
    """(side fraction, where along the free range vertically, horizontally): the whole frame,
    then crops of it every `step` of the side, so that a re-cropped copy's whole frame lies
    within 2.5 % (position and size) of one of its original's windows."""
    out = [(1.0, 0.0, 0.0)]
    for side in sides:
        n = round((1 - side) / step) + 1
        out += [(side, float(y), float(x)) for y in np.linspace(0, 1, n) for x in np.linspace(0, 1, n)]
    return tuple(out)


WINDOWS = _windows()  # 55


def _unit(g: np.ndarray) -> np.ndarray:
    small = cv2.resize(g.astype(np.float32), (VECTOR_SIDE, VECTOR_SIDE),
                       interpolation=cv2.INTER_AREA).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


def vectors(g: np.ndarray) -> np.ndarray:
    """One VECTOR_SIDE^2 unit vector per window of WINDOWS (side fraction, where along the
    free range vertically, horizontally): the whole frame first, then crops of it, so that
    a re-cropped copy's whole frame meets one of its original's windows."""
    base = max(g.shape) / BASE_SIDE
    if base > 1:  # windows cut from a small copy: 55 resizes of a 256-px image cost 10x more
        g = cv2.resize(g, (max(1, round(g.shape[1] / base)), max(1, round(g.shape[0] / base))),
                       interpolation=cv2.INTER_AREA)
    h, w = g.shape
    out = []
    for side, fy, fx in WINDOWS:
        hh, ww = max(1, round(h * side)), max(1, round(w * side))
        top, left = round((h - hh) * fy), round((w - ww) * fx)
        out.append(_unit(g[top:top + hh, left:left + ww]))
    return np.stack(out)


_orb = cv2.ORB_create(nfeatures=ORB_FEATURES, edgeThreshold=15, patchSize=15)
_matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)


def features(g: np.ndarray):
    """ORB keypoints (as an N x 2 float array) and their binary descriptors."""
    keypoints, descriptors = _orb.detectAndCompute(g, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return points, descriptors


def verify(a: np.ndarray, b: np.ndarray, fa=None, fb=None) -> Scores:
    """Fit a similarity transform from a to b and correlate b with a warped onto it."""
    pa, da = fa if fa is not None else features(a)
    pb, db = fb if fb is not None else features(b)
    if da is None or db is None or len(pa) < 3 or len(pb) < 3:
        return Scores(0, 1.0, 0.0, 0.0)
    matches = _matcher.match(da, db)
    if len(matches) < 3:
        return Scores(0, 1.0, 0.0, 0.0)
    src = pa[[m.queryIdx for m in matches]]
    dst = pb[[m.trainIdx for m in matches]]
    transform, inlier = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                    ransacReprojThreshold=3.0, maxIters=2000,
                                                    confidence=0.995)
    if transform is None:
        return Scores(0, 1.0, 0.0, 0.0)
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    angle = float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0])))
    return Scores(int(inlier.sum()), scale, angle, correlation(a, b, transform))


def correlation(a: np.ndarray, b: np.ndarray, transform: np.ndarray) -> float:
    """Pearson correlation of the two images aligned by `transform` (a to b), over the pixels
    both frames cover (a one-pixel rim left out) where either is head. The larger image is
    warped onto the smaller one's frame and both are smoothed (sigma 1 px), so that a rescale
    compares like with like instead of an enlarged blur with sharp detail."""
    if np.hypot(transform[0, 0], transform[1, 0]) > 1:  # a is the smaller: warp b onto a
        a, b, transform = b, a, cv2.invertAffineTransform(transform)
    h, w = b.shape
    warped = cv2.warpAffine(a.astype(np.float32), transform, (w, h), flags=cv2.INTER_AREA)
    cover = cv2.warpAffine(np.ones(a.shape, np.uint8), transform, (w, h), flags=cv2.INTER_NEAREST)
    cover = cv2.erode(cover, np.ones((5, 5), np.uint8))
    warped = cv2.GaussianBlur(warped, (0, 0), 1.0)
    target = cv2.GaussianBlur(b.astype(np.float32), (0, 0), 1.0)
    level = HEAD_LEVEL * 255
    mask = (cover > 0) & ((warped > level) | (target > level))
    if mask.sum() < 64:
        return 0.0
    x, y = warped[mask], target[mask]
    x, y = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def similarity(windows: np.ndarray, chunk: int = 64):
    """Yield (start, S) with S[r, j] the best cosine similarity between image start+r's whole
    frame and any window of image j (itself excluded: -inf)."""
    n, m, d = windows.shape
    flat = windows.reshape(n * m, d)
    for start in range(0, n, chunk):
        sim = (windows[start:start + chunk, 0] @ flat.T).reshape(-1, n, m).max(axis=2)
        rows = np.arange(sim.shape[0])
        sim[rows, rows + start] = -np.inf
        yield start, sim


def candidate_pairs(windows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) where j is among i's k most similar images or i among j's, with the
    larger of the two similarities."""
    n = len(windows)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
    found: dict[tuple[int, int], float] = {}
    for start, sim in similarity(windows):
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        for r, row in enumerate(nearest.tolist()):
            i = start + r
            for j in row:
                key = (min(i, j), max(i, j))
                found[key] = max(found.get(key, -1.0), float(sim[r, j]))
    pairs = np.array(sorted(found), dtype=np.int64).reshape(-1, 2)
    return pairs, np.array([found[tuple(p)] for p in pairs.tolist()], dtype=np.float32)



def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # a damaged cache file is rebuilt, never trusted


def _write_json(path: Path, data) -> None:
    payload = json.dumps(data, sort_keys=True).encode()
    try:
        atomic_write(path, lambda fh: fh.write(payload))
    except OSError as err:
        store.warn(f"cannot write {path} ({err.strerror or err}); robust copies are recomputed "
                   "next time", once=f"copies {path.parent}")


class _Images:
    """Grey pixels and ORB features of the files, decoded on first use."""

    def __init__(self, paths: dict[str, Path]):
        self.paths, self.grey, self.features = paths, {}, {}

    def get(self, sha: str):
        if sha not in self.grey:
            self.grey[sha] = grey(decode(self.paths[sha]))
            self.features[sha] = features(self.grey[sha])
        return self.grey[sha], self.features[sha]


def scored_candidates(paths: list[Path], shas: list[str], candidates: int, cache: Path | None = None,
                      say: Callable[[str], None] | None = None) -> dict[tuple[str, str], Scores]:
    """Every candidate pair of distinct contents (sha, sha), sorted, with its verification scores."""
    cache = cache or cache_root(None)
    source = dict(zip(shas, paths))
    unique = sorted(source)
    digest = hashlib.sha256(("\n".join(unique) + f"\n{candidates}").encode()).hexdigest()[:16]
    cand_file = cache / CANDIDATE_FILE.format(digest)
    images = _Images(source)
    pairs = [tuple(p) for p in _read_json(cand_file).get("pairs", [])]
    if not pairs and len(unique) > 1:
        if say:
            say(f"robust copies: {len(unique)} images, {len(WINDOWS)} windows each")
        windows = np.stack([vectors(images.get(sha)[0]) for sha in unique])
        index, _ = candidate_pairs(windows, candidates)
        del windows  # 55 x 256 floats per image: free them before the verification
        pairs = [(unique[i], unique[j]) for i, j in index.tolist()]
        _write_json(cand_file, {"candidates": candidates, "pairs": pairs})
    known = _read_json(cache / SCORE_FILE)
    todo = [p for p in pairs if f"{p[0]} {p[1]}" not in known]
    if say and todo:
        say(f"robust copies: verifying {len(todo)} of {len(pairs)} candidate pairs")
    for a, b in todo:
        (ga, fa), (gb, fb) = images.get(a), images.get(b)
        s = verify(ga, gb, fa, fb)
        known[f"{a} {b}"] = [s.inliers, round(s.scale, 4), round(s.angle, 3), round(s.correlation, 4)]
    if todo:
        _write_json(cache / SCORE_FILE, known)
    return {p: Scores(*known[f"{p[0]} {p[1]}"]) for p in pairs}


def copy_pairs(shas: list[str], scored: dict[tuple[str, str], Scores], min_inliers: int,
               min_correlation: float) -> np.ndarray:
    """Record index pairs (first record of each content) of the pairs verified as copies."""
    first: dict[str, int] = {}
    for i, sha in enumerate(shas):
        first.setdefault(sha, i)
    found = [(first[a], first[b]) for (a, b), s in scored.items()
             if s.is_copy(min_inliers, min_correlation)]
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)
