"""A checkpoint that cannot be used never costs a silent restart or a permanent failure: it is
named in one line with the reason, moved aside (kept, not deleted), and the cell trains from
epoch 0; the run after that works."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_checkpoints import CFG, _fit  # tests/train is on sys.path under pytest
from torch import nn

from mribench.train.checkpoints import Checkpoints, CheckpointUnusable


def _good(tmp_path: Path) -> bytes:
    """A real checkpoint: the test net stopped after epoch 2 of 4."""
    ckpt = Checkpoints.open(tmp_path / "made", "key", every=1)

    def stop_after_two(batch: int, _total: int) -> None:
        seen.append(batch)
        if len(seen) == 16:
            raise KeyboardInterrupt

    seen: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        _fit(ckpt, stop_after_two)
    return ckpt.file.read_bytes()


def _aside(root: Path) -> list[Path]:
    return sorted(root.glob("key.last.pt.corrupt-*"))


@pytest.mark.parametrize("damage, reason", [
    (lambda good: good[: len(good) // 2], "cannot be read"),  # truncated mid-write
    (lambda good: os.urandom(4096), "cannot be read"),  # random bytes
    (lambda good: b"", "cannot be read"),  # empty
], ids=["truncated", "random", "empty"])
def test_an_unreadable_checkpoint_is_named_moved_aside_and_training_starts_over(
        tmp_path, capsys, damage, reason):
    good = _good(tmp_path)
    reference, _ = _fit()
    root = tmp_path / "ckpt"
    (root / "key").mkdir(parents=True)
    damaged = damage(good)
    (root / "key" / "last.pt").write_bytes(damaged)
    capsys.readouterr()

    ckpt = Checkpoints.open(root, "key", every=1, model=nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2)))
    said = capsys.readouterr().err
    lines = [line for line in said.splitlines() if line.strip()]
    assert len(lines) == 1 and str(root / "key" / "last.pt") in lines[0] and reason in lines[0]
    assert "moved aside" in lines[0] and "epoch 0" in lines[0]
    assert ckpt.saved is None and ckpt.discarded.startswith(reason)
    (kept,) = _aside(root)
    assert kept.read_bytes() == damaged  # kept as it was, for a look
    result, _ = _fit(ckpt)  # from epoch 0, as an uninterrupted run
    assert [r["train_loss"] for r in result.history] == \
        [r["train_loss"] for r in reference.history]


def test_a_checkpoint_of_another_model_is_named_with_the_layer_that_differs(tmp_path, capsys):
    root = tmp_path / "ckpt"
    (root / "key").mkdir(parents=True)
    (root / "key" / "last.pt").write_bytes(_good(tmp_path))
    capsys.readouterr()
    # the same layers, the hidden width changed (as a library upgrade can do to an architecture)
    other = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
    ckpt = Checkpoints.open(root, "key", every=1, model=other)
    said = capsys.readouterr().err.strip()
    assert "\n" not in said and "does not fit the model" in said, said
    assert "0.weight [16, 6] where the model has [32, 6]" in said
    assert ckpt.saved is None and len(_aside(root)) == 1
    again = Checkpoints.open(root, "key", every=1, model=other)  # nothing left to trip on
    assert again.saved is None and again.discarded is None


def test_a_checkpoint_whose_optimizer_state_does_not_fit_fails_once_then_the_rerun_works(
        tmp_path, capsys):
    root = tmp_path / "ckpt"
    (root / "key").mkdir(parents=True)
    saved = torch.load(_bytes_file(tmp_path, _good(tmp_path)), weights_only=True)
    saved["optimizer"]["param_groups"].append(dict(saved["optimizer"]["param_groups"][0]))
    torch.save(saved, root / "key" / "last.pt")
    ckpt = Checkpoints.open(root, "key", every=1)
    assert ckpt.saved is not None  # the weights fit; the optimizer's groups do not
    with pytest.raises(CheckpointUnusable) as err:
        _fit(ckpt)
    assert str(root / "key" / "last.pt") in str(err.value) and "moved aside" in str(err.value)
    assert len(_aside(root)) == 1
    result, _ = _fit(Checkpoints.open(root, "key", every=1))  # the rerun: from epoch 0
    assert len(result.history) == CFG.epochs


def _bytes_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "good.pt"
    path.write_bytes(data)
    return path


def test_a_suite_rerun_over_a_damaged_checkpoint_says_so_and_finishes(tmp_path):
    """Through the command: random bytes where the cell's checkpoint is; the run names the file,
    keeps it aside, trains the cell from epoch 0 and finishes, leaving nothing behind."""
    from mribench.config.suite_file import load_suite
    from mribench.matrix import expand

    suite = {"name": "damaged", "experiment": "damaged",
             "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 32}, "training": {"epochs": 1, "batch_size": 8},
             "models": [{"name": "test_resnet"}], "strategies": ["scratch"],
             "artifacts": {"model": "none"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    (cell,) = expand(load_suite(tmp_path / "s.yaml"))
    folder = tmp_path / "cache" / "checkpoints" / cell.run_key
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(os.urandom(2048))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "mribench", "suite", "s.yaml"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if "last.pt" in line]
    assert len(said) == 1 and "cannot be read" in said[0] and "moved aside" in said[0], said
    assert len(list(folder.parent.glob(f"{cell.run_key}.last.pt.corrupt-*"))) == 1
    assert not (folder / "last.pt").exists()  # the finished cell left nothing to trip on
