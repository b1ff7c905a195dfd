"""The decoded-image cache: one uint8 array file per image set and preprocessing, on disk.

`<cache>/pixels/<size>-<channels>-<interp>/<key>.npy` holds the set's unique images as rows of an
[N, H, W, C] uint8 array (a plain .npy: any tool can memory-map it); `<key>.json` beside it says
what each row was made from (the source file's sha256), the preprocessing, shape and dtype, a
crc32 of each row's bytes, and a digest of itself. The key hashes the preprocessing and the set of
source hashes, so every split, seed and fold of a dataset reads the same file, and an edited file
makes a new entry instead of serving stale pixels.

Rows are read with positioned reads (`os.preadv` into a fresh array) rather than through a memory
map: the bytes stay in the OS page cache, shared by every process and loader worker, and count in
no process's RSS (pages of a memory map that an epoch touched do count, up to the whole file), so
a process's memory no longer grows with the dataset. Each row is checked against its crc32 the
first time a process reads it; an entry that does not match what it claims is rebuilt from the
source file with a warning. A cache folder that cannot be written (read-only, full) degrades to
keeping the decoded images in memory for this run, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from mribench.config.schema import PreprocessConfig
from mribench.console import console
from mribench.data.decode import decode, to_pixels
from mribench.files import atomic_write, file_sha256

FORMAT = 1
_warned: set[str] = set()


def warn(message: str, once: str | None = None) -> None:
    if once is not None:
        if once in _warned:
            return
        _warned.add(once)
    console.print(f"warning: {message}", style="yellow", markup=False, highlight=False,
                  soft_wrap=True)  # one line per warning: greppable in logs


def pre_key(pre: PreprocessConfig) -> tuple:
    return (pre.image_size, pre.channels, pre.interpolation)


def _crc(row: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(row)).cast("B"))


def _digest(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class PixelStore:
    """The rows of one image set at one preprocessing (see `images.open_store`)."""

    def __init__(self, folder: Path, pre: PreprocessConfig, sources: dict[str, Path]):
        self.pre = pre
        self.shas = sorted(sources)
        self.paths = dict(sources)  # sha -> a file with that content (to rebuild a row)
        self.row_of = {sha: i for i, sha in enumerate(self.shas)}
        self.row_shape = (pre.image_size, pre.image_size, pre.channels)
        self.row_bytes = int(np.prod(self.row_shape))
        key = hashlib.sha256(json.dumps([pre_key(pre), self.shas]).encode()).hexdigest()[:24]
        self.folder = folder
        self.file = folder / "pixels" / "-".join(map(str, pre_key(pre))) / f"{key}.npy"
        self.meta_file = self.file.with_suffix(".json")
        self.checksums: list[int | None] = [None] * len(self.shas)
        self.offset = 0
        self.memory: np.ndarray | None = None  # the whole set in memory: disk cache unusable
        self.patched: dict[int, np.ndarray] = {}  # rebuilt rows the disk could not take
        self.verified = bytearray(len(self.shas))  # rows checked in this process
        self._fd: int | None = None
        self._tmp: Path | None = None
        self._dirty = False

    def __getstate__(self):  # to loader workers started by spawn: reopen the file there
        return {**self.__dict__, "_fd": None}

    # -- opening an existing entry -------------------------------------------------------------
    def _expected_meta(self) -> dict:
        return {"format": FORMAT, "made_from": "decoded images, one row per source sha256",
                "preprocess": {"image_size": self.pre.image_size, "channels": self.pre.channels,
                               "interpolation": self.pre.interpolation},
                "shape": [len(self.shas), *self.row_shape], "dtype": "uint8",
                "sources": self.shas}

    def load(self) -> str | None:
        """Adopt the entry on disk; returns why it cannot be used (None: it can)."""
        if not self.file.is_file() and not self.meta_file.is_file():
            return "absent"
        try:
            meta = json.loads(self.meta_file.read_text())
            wanted = self._expected_meta()
            if meta.get("digest") != _digest(meta):
                return "its description does not match its own digest"
            for key, value in wanted.items():
                if meta.get(key) != value:
                    return f"it was made from a different {key}"
            with open(self.file, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                offset = fh.tell()
            if tuple(shape) != tuple(wanted["shape"]) or dtype != np.uint8 or fortran:
                return f"its array is {dtype}{list(shape)}, not uint8{wanted['shape']}"
            if self.file.stat().st_size < offset + len(self.shas) * self.row_bytes:
                return "the file is truncated"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"it cannot be read ({type(err).__name__}: {err})"
        self.checksums, self.offset = list(meta["checksums"]), offset
        return None

    def missing(self, sha: str) -> bool:
        return self.checksums[self.row_of[sha]] is None

    # -- building ------------------------------------------------------------------------------
    def begin(self) -> None:
        """Start a fresh entry: an empty array file written next to the final one."""
        self.checksums, self.verified = [None] * len(self.shas), bytearray(len(self.shas))
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            _remove_orphans(self.file)
            fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=f"{self.file.stem}.{os.getpid()}.",
                                       suffix=".tmp")
            self._tmp = Path(tmp)
            with os.fdopen(fd, "wb") as fh:
                header = {"descr": "|u1", "fortran_order": False,
                          "shape": (len(self.shas), *self.row_shape)}
                np.lib.format.write_array_header_2_0(fh, header)
                self.offset = fh.tell()
                fh.truncate(self.offset + len(self.shas) * self.row_bytes)  # sparse until filled
        except OSError as err:
            self._to_memory(err)

    def put(self, sha: str, pixels: np.ndarray) -> None:
        row = self.row_of[sha]
        if pixels.shape != self.row_shape or pixels.dtype != np.uint8:
            raise ValueError(f"pixels of shape {pixels.shape} {pixels.dtype}, expected "
                             f"{self.row_shape} uint8")
        if self.memory is None:
            try:
                self._write(self._tmp or self.file, row, pixels)
            except OSError as err:
                self._to_memory(err)
        if self.memory is not None:
            self.memory[row] = pixels
        self.checksums[row], self.verified[row], self._dirty = _crc(pixels), 1, True

    def finish(self) -> "PixelStore":
        """Publish the entry: the data, then its description."""
        if self._dirty and self.memory is None:
            try:
                if self._tmp is not None:
                    os.replace(self._tmp, self.file)
                    self._tmp = None
                self._write_meta()
            except OSError as err:
                self._to_memory(err)
        self._dirty = False
        return self

    def _write(self, target: Path, row: int, pixels: np.ndarray) -> None:
        fd = os.open(target, os.O_WRONLY)
        try:
            data = memoryview(np.ascontiguousarray(pixels)).cast("B")
            if os.pwrite(fd, data, self.offset + row * self.row_bytes) != self.row_bytes:
                raise OSError(f"short write to {target}")
        finally:
            os.close(fd)

    def _write_meta(self) -> None:
        meta = {**self._expected_meta(), "checksums": self.checksums}
        meta["digest"] = _digest(meta)
        atomic_write(self.meta_file, lambda fh: fh.write(json.dumps(meta).encode()))

    def _to_memory(self, err: OSError) -> None:
        """The disk cache cannot be written: keep this set's pixels in memory for this run."""
        warn(f"cannot write the decoded-image cache in {self.file.parent} ({err.strerror or err}); "
             "this run keeps decoded images in memory instead (no disk cache; set "
             "BENCHMARK_CACHE_DIR to a writable folder with free space)", once=str(self.file.parent))
        memory = np.zeros((len(self.shas), *self.row_shape), np.uint8)
        source = next((p for p in (self._tmp, self.file) if p is not None and p.exists()), None)
        for row, checksum in enumerate(self.checksums):  # keep rows already written and intact
            if checksum is None:
                continue
            pixels = self._read_disk(row, source) if source else self.patched.get(row)
            if pixels is not None and _crc(pixels) == checksum:
                memory[row] = pixels
            else:
                self.checksums[row] = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self.memory, self.patched = memory, {}

    # -- reading -------------------------------------------------------------------------------
    def _read_disk(self, row: int, path: Path | None = None) -> np.ndarray | None:
        out = np.empty(self.row_shape, np.uint8)
        try:
            if path is not None:
                with open(path, "rb") as fh:
                    got = os.preadv(fh.fileno(), [out], self.offset + row * self.row_bytes)
            else:
                if self._fd is None:
                    self._fd = os.open(self.file, os.O_RDONLY)
                got = os.preadv(self._fd, [out], self.offset + row * self.row_bytes)
        except OSError:
            return None
        return out if got == self.row_bytes else None

    def read(self, sha: str) -> np.ndarray:
        """The row for this source as a fresh, writable uint8 [H, W, C] array."""
        row = self.row_of[sha]
        if self.checksums[row] is None:
            raise KeyError(f"decoded-image cache {self.file}: no row for sha256 {sha[:12]}... yet")
        if self.memory is not None:
            return self.memory[row].copy()
        if row in self.patched:
            return self.patched[row].copy()
        pixels = self._read_disk(row)
        if self.verified[row] and pixels is not None:
            return pixels
        if pixels is None or self.checksums[row] is None or _crc(pixels) != self.checksums[row]:
            return self._rebuild(row)
        self.verified[row] = 1
        return pixels

    def _rebuild(self, row: int) -> np.ndarray:
        sha, path = self.shas[row], self.paths.get(self.shas[row])
        if path is None or file_sha256(path) != sha:
            raise ValueError(f"decoded-image cache {self.file}: row {row} is damaged and its source "
                             f"(sha256 {sha[:12]}...) is not known to this process; delete the file")
        warn(f"decoded-image cache {self.file.name}: the entry for {path} does not match its "
             "checksum (damaged or overwritten); rebuilt from the image")
        pixels = to_pixels(decode(path), self.pre)
        checksum, self.verified[row] = _crc(pixels), 1
        try:
            self._write(self.file, row, pixels)
            if checksum != self.checksums[row]:  # the decoder changed, not just the bytes on disk
                self.checksums[row] = checksum
                self._write_meta()
        except OSError as err:
            warn(f"cannot repair the decoded-image cache {self.file} ({err.strerror or err}); the "
                 "rebuilt image is kept in memory for this run", once=f"repair {self.file}")
            self.patched[row] = pixels
        return pixels.copy()


def _remove_orphans(file: Path) -> None:
    """Half-built entries left by killed processes (`<key>.<pid>.*.tmp` of a dead pid)."""
    for tmp in file.parent.glob(f"{file.stem}.*.tmp"):
        pid = tmp.name.split(".")[1]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass  # not ours to judge: another user's process, or not our naming
