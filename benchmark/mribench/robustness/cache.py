"""The corrupted-image store: every test image under each artefact and severity, made once.

One entry per (image set, preprocessing, artefact, severity, severity-table version), beside the
decoded pixels: `<cache>/corrupted/v<VERSION>/<size>-<channels>-<interp>/<artefact>-s<k>/<key>.npy`
with its `.json`. It is the pixel store's format and machinery (data/store.py: content-keyed by
the source files' sha256, a crc32 per row, a self-digest, rebuilt with a warning when it does not
match, in memory when the folder cannot be written); only what a row is made from differs: the
image's decoded pixels under `corrupt.corrupt`, not the decoded file. Cells of one invocation
share the entries through this process's memo, later invocations and other processes through the
disk.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mribench.config.schema import PreprocessConfig
from mribench.data import images, store
from mribench.data.store import PixelStore
from mribench.robustness.corrupt import corrupt
from mribench.robustness.severities import VERSION, parameters

_memo: dict[tuple, "CorruptedStore"] = {}


class CorruptedStore(PixelStore):
    """The rows of one image set under one artefact at one severity."""

    def __init__(self, folder: Path, pre: PreprocessConfig, sources: dict[str, Path],
                 artefact: str, severity: int, clean: dict[str, PixelStore]):
        super().__init__(folder, pre, sources)
        self.artefact, self.severity, self.clean = artefact, severity, clean
        key = hashlib.sha256(json.dumps([store.pre_key(pre), self.shas, artefact, severity,
                                         VERSION]).encode()).hexdigest()[:24]
        self.file = (folder / "corrupted" / f"v{VERSION}" / "-".join(map(str, store.pre_key(pre)))
                     / f"{artefact}-s{severity}" / f"{key}.npy")
        self.meta_file = self.file.with_suffix(".json")

    def __getstate__(self):  # loader workers read rows; they never make them
        return {**super().__getstate__(), "clean": {}}

    def _expected_meta(self) -> dict:
        return {**super()._expected_meta(),
                "made_from": "decoded images under one artefact, one row per source sha256",
                "corruption": {"artefact": self.artefact, "severity": self.severity,
                               "table_version": VERSION,
                               "parameters": parameters(self.artefact, self.severity)}}

    def make(self, sha: str) -> np.ndarray:
        return corrupt(self.clean[sha].read(sha), self.artefact, self.severity, sha)

    def _rebuild(self, row: int) -> np.ndarray:
        sha = self.shas[row]
        if sha not in self.clean:
            raise ValueError(f"corrupted-image cache {self.file}: row {row} is damaged and its "
                             "source is not known to this process; delete the file")
        store.warn(f"corrupted-image cache {self.file.name}: the row of sha256 {sha[:12]}... does "
                   "not match its checksum (damaged or overwritten); made again")
        pixels = self.make(sha)
        self.verified[row] = 1
        try:
            self._write(self.file, row, pixels)
        except OSError:
            self.patched[row] = pixels  # kept in memory for this run
        return pixels.copy()


def corrupted_rows(paths: list[Path], pre: PreprocessConfig, artefact: str,
                   severity: int) -> list[tuple[PixelStore, str]]:
    """(store, sha256) of each file's corrupted pixels, made now if no entry holds them."""
    clean = images.pixels_for(list(paths), pre)
    shas = [sha for _, sha in clean]
    by_sha = {sha: pixels for pixels, sha in clean}
    key = (str(images.cache_dir()), store.pre_key(pre), artefact, severity, frozenset(shas))
    entry = _memo.get(key)
    if entry is None:
        sources = {sha: Path(p) for p, sha in zip(paths, shas)}
        entry = CorruptedStore(images.cache_dir(), pre, sources, artefact, severity, by_sha)
        why = entry.load()
        if why is not None:
            if why != "absent":
                store.warn(f"corrupted-image cache {entry.file} is not used: {why}; making it again")
            entry.begin()
            for sha in entry.shas:
                entry.put(sha, entry.make(sha))
            entry.finish()
        _memo[key] = entry
    entry.clean.update(by_sha)
    return [(entry, sha) for sha in shas]
