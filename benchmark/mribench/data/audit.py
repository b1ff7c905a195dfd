"""Leakage audit: exact (content hash) and near (perceptual hash) duplicate groups.

A group is a set of two or more files that are the same image (exact) or look the same
(grouped transitively over pairs whose 256-bit pHashes differ in at most 4 x threshold bits, so the
threshold keeps its usual meaning of "bits out of 64"). The summary says how
many groups sit within one split or cross splits, how many test files have a copy in train/val,
and how many groups mix labels.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KINDS = ("exact", "near")


@dataclass(frozen=True)
class Record:
    path: Path
    cls: str
    split: str  # train | val | test | all
    sha: str
    phash: str  # 256-bit perceptual hash, 64 hex digits


def _components(n: int, pairs: np.ndarray) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def near_pairs(phashes: list[str], threshold: int, chunk: int = 128) -> np.ndarray:
    """All index pairs (i < j) whose pHashes differ in at most threshold bits per 64."""
    words = len(phashes[0]) // 16 if phashes else 1
    h = np.array([[int(p[k:k + 16], 16) for k in range(0, 16 * words, 16)] for p in phashes],
                 dtype=np.uint64).reshape(len(phashes), words)
    out = []
    for start in range(0, len(h), chunk):
        block = h[start:start + chunk, None, :] ^ h[None, :, :]
        distance = np.bitwise_count(block).sum(axis=2, dtype=np.int32)
        i, j = np.nonzero(distance <= threshold * words)
        i = i + start
        keep = i < j
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


@dataclass
class AuditResult:
    records: list[Record]
    threshold: int
    groups: dict[str, list[list[int]]]  # kind -> groups of record indices

    def leaked_test(self, kind: str) -> set[int]:
        """Test records that have a duplicate of `kind` in train or val."""
        leaked = set()
        for group in self.groups[kind]:
            if any(self.records[i].split in ("train", "val") for i in group):
                leaked.update(i for i in group if self.records[i].split == "test")
        return leaked

    def summary(self) -> dict[str, int]:
        out = {"files": len(self.records), "near_threshold": self.threshold}
        for kind in KINDS:
            groups = self.groups[kind]
            splits = [{self.records[i].split for i in g} for g in groups]
            out[f"{kind}_groups"] = len(groups)
            out[f"{kind}_files_in_groups"] = sum(len(g) for g in groups)
            out[f"{kind}_redundant_files"] = sum(len(g) - 1 for g in groups)
            out[f"{kind}_within_split_groups"] = sum(len(s) == 1 for s in splits)
            out[f"{kind}_cross_split_groups"] = sum(len(s) > 1 for s in splits)
            out[f"{kind}_test_files_leaked"] = len(self.leaked_test(kind))
            out[f"{kind}_label_conflict_groups"] = sum(
                len({self.records[i].cls for i in g}) > 1 for g in groups)
        return out

    def group_rows(self, root: Path | None = None) -> list[dict]:
        """One row per file in a group, for the CSV the audit command writes."""
        rows = []
        for kind in KINDS:
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


def audit(records: list[Record], near_threshold: int) -> AuditResult:
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_sha[r.sha].append(i)
    exact = [g for g in by_sha.values() if len(g) > 1]
    near = _components(len(records), near_pairs([r.phash for r in records], near_threshold))
    return AuditResult(records, near_threshold, {"exact": sorted(exact), "near": sorted(near)})
