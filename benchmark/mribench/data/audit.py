"""Leakage audit: exact (content hash), near (perceptual hash) and robust duplicate groups.

A group is a set of two or more files that are the same image (exact: equal sha256) or look the
same (near: grouped transitively over pairs whose 256-bit perceptual hashes differ in at most
`near_bits` of their 256 bits). On the 7023 set a JPEG re-encode moves the hash by at most 6
bits, a 20% brightening by up to 16, and two unrelated images differ in about 124 (median over
all pairs); pairs eyeballed as "the same slice" reach 20-22. The summary says how many groups
sit within one split or cross splits, how many test files have a copy in train/val, and how
many groups mix labels; `sweep` repeats the near counts at several thresholds, so a user sees
how sensitive the clean test figure is. Robust groups (asked for; data/copies.py) join the near
pairs and the pairs verified as cropped, rescaled, rotated or re-encoded copies into connected
components, so every near group lies within one robust group.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

KINDS = ("exact", "near", "robust")
HASH_BITS = 256
DEFAULT_NEAR_BITS = 16  # of 256 (4 per 64: the common 64-bit pHash threshold, scaled)
SWEEP_BITS = (0, 8, 16, 24, 32)


@dataclass(frozen=True)
class Record:
    path: Path
    cls: str
    split: str  # train | val | test | all
    sha: str
    phash: str  # 256-bit perceptual hash, 64 hex digits


def _components(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Groups (connected components with two or more members) of the graph of pairs,
    each sorted, in order of their smallest member."""
    if not len(pairs):
        return []
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for i, component in enumerate(label.tolist()):
        members[component].append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])


def near_pairs(phashes: list[str], max_bits: int, chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) whose hashes differ in at most max_bits bits, and that distance."""
    words = len(phashes[0]) // 16 if phashes else 1
    h = np.array([[int(p[k:k + 16], 16) for k in range(0, 16 * words, 16)] for p in phashes],
                 dtype=np.uint64).reshape(len(phashes), words)
    pairs, dists = [np.zeros((0, 2), dtype=np.int64)], [np.zeros(0, dtype=np.int32)]
    for start in range(0, len(h), chunk):
        block = h[start:start + chunk, None, :] ^ h[None, :, :]
        distance = np.bitwise_count(block).sum(axis=2, dtype=np.int32)
        i, j = np.nonzero(distance <= max_bits)
        keep = i + start < j
        pairs.append(np.stack([i[keep] + start, j[keep]], axis=1))
        dists.append(distance[i[keep], j[keep]])
    return np.concatenate(pairs), np.concatenate(dists)


def find_groups(shas: list[str], phashes: list[str], near_bits: int,
                robust_pairs: np.ndarray | None = None) -> dict[str, list[list[int]]]:
    """Duplicate groups of record indices, per kind; independent of any split. With
    `robust_pairs` (index pairs verified as robust copies) also the kind robust."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, sha in enumerate(shas):
        by_sha[sha].append(i)
    exact = sorted((g for g in by_sha.values() if len(g) > 1), key=lambda g: g[0])
    pairs, _ = near_pairs(phashes, near_bits)
    groups = {"exact": exact, "near": _components(len(phashes), pairs)}
    if robust_pairs is not None:
        groups["robust"] = _components(len(phashes), np.concatenate([pairs, robust_pairs.reshape(-1, 2)]))
    return groups


@dataclass
class AuditResult:
    records: list[Record]
    near_bits: int
    groups: dict[str, list[list[int]]]  # kind -> groups of record indices
    thresholds: dict = field(default_factory=dict)  # the robust matcher's, when it ran

    def leaked_test(self, kind: str) -> set[int]:
        """Test records that have a duplicate of `kind` in train or val."""
        return _leaked(self.records, self.groups[kind])

    def kinds(self) -> list[str]:
        return [kind for kind in KINDS if kind in self.groups]

    def summary(self) -> dict[str, int]:
        out = {"files": len(self.records), "near_bits": self.near_bits, **self.thresholds}
        for kind in self.kinds():
            out.update({f"{kind}_{k}": v for k, v in _counts(self.records, self.groups[kind]).items()})
        return out

    def group_rows(self, root: Path | None = None) -> list[dict]:
        """One row per file in a group, for the CSV the audit command writes."""
        rows = []
        for kind in self.kinds():
            for number, group in enumerate(self.groups[kind], start=1):
                labels = {self.records[i].cls for i in group}
                splits = {self.records[i].split for i in group}
                for i in group:
                    r = self.records[i]
                    path = r.path.relative_to(root) if root and r.path.is_relative_to(root) else r.path
                    rows.append({"kind": kind, "group": number, "path": str(path), "class": r.cls,
                                 "split": r.split, "sha256": r.sha, "phash": r.phash,
                                 "cross_split": len(splits) > 1, "label_conflict": len(labels) > 1})
        return rows


def _leaked(records: list[Record], groups: list[list[int]]) -> set[int]:
    leaked = set()
    for group in groups:
        if any(records[i].split in ("train", "val") for i in group):
            leaked.update(i for i in group if records[i].split == "test")
    return leaked


def _counts(records: list[Record], groups: list[list[int]]) -> dict[str, int]:
    splits = [{records[i].split for i in g} for g in groups]
    return {"groups": len(groups), "files_in_groups": sum(len(g) for g in groups),
            "redundant_files": sum(len(g) - 1 for g in groups),
            "within_split_groups": sum(len(s) == 1 for s in splits),
            "cross_split_groups": sum(len(s) > 1 for s in splits),
            "test_files_leaked": len(_leaked(records, groups)),
            "label_conflict_groups": sum(len({records[i].cls for i in g}) > 1 for g in groups)}


def audit(records: list[Record], near_bits: int = DEFAULT_NEAR_BITS,
          groups: dict[str, list[list[int]]] | None = None, thresholds: dict | None = None) -> AuditResult:
    """The audit of records as split now; pass `groups` when find_groups already ran, and the
    robust matcher's `thresholds` (copy_match_*) when it did."""
    if groups is None:
        groups = find_groups([r.sha for r in records], [r.phash for r in records], near_bits)
    return AuditResult(records, near_bits, groups, dict(thresholds or {}))


def sweep(records: list[Record], bits: tuple[int, ...] = SWEEP_BITS) -> list[dict]:
    """Near-duplicate counts at several thresholds (bits of 256), one row each; the pairs are
    computed once at the largest threshold."""
    pairs, dist = near_pairs([r.phash for r in records], max(bits))
    rows = []
    for b in sorted(bits):
        groups = _components(len(records), pairs[dist <= b])
        rows.append({"near_bits": b, **_counts(records, groups)})
    return rows


def robust_pairs(records: list[Record], match, say=None) -> tuple[np.ndarray, dict]:
    """Index pairs of records verified as robust copies under `match` (a CopyMatchConfig), and
    the thresholds as the summary logs them (copy_match_*)."""
    from mribench.data import copies, images

    shas = [r.sha for r in records]
    scored = copies.scored_candidates([r.path for r in records], shas, match.candidates,
                                      images.cache_dir(), say)
    pairs = copies.copy_pairs(shas, scored, match.min_inliers, match.min_correlation)
    return pairs, {f"copy_match_{k}": v for k, v in match.model_dump().items()}
