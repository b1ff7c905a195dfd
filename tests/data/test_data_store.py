"""The on-disk decoded-image store: bit-identical to decoding in memory, proves itself, degrades.

Real images (a few per class of the 7023 set) through the real prepare() and loader. A "new
process" is simulated by forgetting the stores and content hashes this process knows.
"""
from __future__ import annotations

import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from mribench import files
from mribench.config.schema import AugmentConfig, DatasetConfig, PreprocessConfig, SplitConfig
from mribench.data import images, make_loader, prepare, store
from mribench.data.images import decode, to_pixels

PRE = PreprocessConfig(image_size=32)
AUG = AugmentConfig(rotation=15, hflip=True, brightness=0.2)
NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def fresh_process(monkeypatch) -> None:
    monkeypatch.setattr(images, "_stores", {})
    monkeypatch.setattr(store, "_warned", set())
    monkeypatch.setattr(files, "_SHA256", {})


def train_split(data_dir, cache: Path):
    return prepare(DatasetConfig(name="brain-tumor-mri-7023", subset_per_class=3),
                   SplitConfig(protocol="official", val_fraction=0.34), PRE, seed=0, fold=None,
                   data_dir=str(data_dir), cache_dir=str(cache)).splits["train"]


def epoch(samples) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = make_loader(samples, PRE, AUG, **NORM, batch_size=4, shuffle=True, seed=5)
    return [(x.clone(), y.clone()) for x, y in loader]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v)
                                    for (x, y), (u, v) in zip(a, b))


def store_files(cache: Path) -> list[Path]:
    return sorted((cache / "pixels").rglob("*.npy"))


@contextmanager
def read_only(folder: Path):
    """Make `folder` (and everything in it) unwritable, even for root (immutable attribute)."""
    root = os.geteuid() == 0
    cmd = ["chattr", "-R", "+i", str(folder)] if root else ["chmod", "-R", "a-w", str(folder)]
    undo = ["chattr", "-R", "-i", str(folder)] if root else ["chmod", "-R", "u+w", str(folder)]
    done = subprocess.run(cmd, capture_output=True).returncode == 0
    try:
        probe = folder / "probe"
        try:
            probe.touch()
            probe.unlink()
            pytest.skip("cannot make a folder read-only on this file system")
        except OSError:
            pass
        assert done
        yield
    finally:
        subprocess.run(undo, capture_output=True)


def test_store_rows_equal_a_fresh_decode_and_batches_equal_the_in_memory_ones(
        data_dir, tmp_path, monkeypatch, capsys):
    samples = train_split(data_dir, tmp_path / "cache")
    (data_file,) = store_files(tmp_path / "cache")
    for s in samples:
        assert np.array_equal(images.load_image(s.path, PRE), to_pixels(decode(s.path), PRE))
    on_disk = epoch(samples)

    # a cache folder that cannot exist (its parent is a file): everything stays in memory
    fresh_process(monkeypatch)
    (tmp_path / "file").write_text("not a folder")
    in_memory = epoch(train_split(data_dir, tmp_path / "file" / "cache"))
    assert "keeps decoded images in memory" in capsys.readouterr().err
    assert same(on_disk, in_memory)
    assert np.load(data_file, mmap_mode="r").shape[1:] == (32, 32, 3)  # a plain .npy


def test_zero_filled_rows_are_rebuilt_with_a_warning(data_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    reference = epoch(train_split(data_dir, cache))
    (data_file,) = store_files(cache)
    arr = np.load(data_file, mmap_mode="r+")
    arr[:] = 0  # right shape and dtype, wrong bytes
    arr.flush()
    del arr

    fresh_process(monkeypatch)
    assert same(epoch(train_split(data_dir, cache)), reference)
    err = capsys.readouterr().err
    assert "does not match its checksum" in err and "rebuilt" in err
    fresh_process(monkeypatch)  # repaired on disk: the next process reads it silently
    assert same(epoch(train_split(data_dir, cache)), reference)
    assert "checksum" not in capsys.readouterr().err


def test_wrong_shape_entry_is_rebuilt_with_a_warning(data_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    reference = epoch(train_split(data_dir, cache))
    (data_file,) = store_files(cache)
    np.save(data_file, np.zeros((3, 16, 16, 3), np.uint8))
    orphan = data_file.with_name(f"{data_file.stem}.999999999.x.tmp")  # a killed builder's
    orphan.write_bytes(b"partial")

    fresh_process(monkeypatch)
    assert same(epoch(train_split(data_dir, cache)), reference)
    assert "its array is uint8[3, 16, 16, 3]" in capsys.readouterr().err
    assert np.load(data_file, mmap_mode="r").shape[1:] == (32, 32, 3)
    assert not orphan.exists()


def test_warm_read_only_cache_serves_and_repairs_in_memory(data_dir, tmp_path, monkeypatch,
                                                           capsys):
    cache = tmp_path / "cache"
    reference = epoch(train_split(data_dir, cache))
    (data_file,) = store_files(cache)
    rows = np.load(data_file, mmap_mode="r").shape
    row_bytes = int(np.prod(rows[1:]))
    start = data_file.stat().st_size - rows[0] * row_bytes
    with open(data_file, "r+b") as fh:  # damage every row's last bytes, so the training
        for row in range(rows[0]):      # images are hit whichever rows they occupy
            fh.seek(start + (row + 1) * row_bytes - 64)
            fh.write(bytes(64))
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    with read_only(cache):
        fresh_process(monkeypatch)
        assert same(epoch(train_split(data_dir, cache)), reference)
    err = capsys.readouterr().err
    assert "does not match its checksum" in err and "kept in memory" in err
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before  # nothing written


def test_full_cache_folder_degrades_to_memory(data_dir, tmp_path, monkeypatch, capsys):
    reference = epoch(train_split(data_dir, tmp_path / "ok"))
    fresh_process(monkeypatch)
    real, written = os.pwrite, []

    def fills_up(fd, data, offset):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(offset)
        return real(fd, data, offset)

    monkeypatch.setattr(store.os, "pwrite", fills_up)
    assert same(epoch(train_split(data_dir, tmp_path / "full")), reference)
    assert "No space left on device" in capsys.readouterr().err
    (stores,) = images._stores.values()
    assert len(stores) == 1 and stores[0].memory is not None  # the whole set, in memory
    assert not list((tmp_path / "full").rglob("*.tmp"))  # the partial file is removed


def test_suite_runs_with_an_empty_read_only_cache_folder(data_dir, tmp_path, monkeypatch,
                                                         mlflow_store, capsys):
    from mlflow.tracking import MlflowClient

    from mribench.config.suite_file import load_suite
    from mribench.run.suite import SuiteOptions, run_suite

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(cache))
    fresh_process(monkeypatch)
    suite = load_suite("smoke", {"training.epochs": 1, "explain.methods": [],
                                 "experiment": "ro-cache", "models": [{"name": "test_resnet"}]})
    with read_only(cache):
        assert run_suite(suite, SuiteOptions(device="cpu", data_dir=str(data_dir))) == 0
    exp = MlflowClient().get_experiment_by_name("ro-cache")
    (run,) = MlflowClient().search_runs([exp.experiment_id], "tags.role = 'cell'")
    assert run.info.status == "FINISHED"
    err = capsys.readouterr().err
    assert "keeps decoded images in memory" in err and "Traceback" not in err
    assert not any(cache.iterdir())
