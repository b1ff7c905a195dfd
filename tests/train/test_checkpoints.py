"""Mid-cell resume: a killed training resumes from its checkpoint and ends exactly where an
uninterrupted one does; SIGTERM mid-epoch writes the batch it stopped at."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from torch import nn

from mribench.config.schema import TrainingConfig
from mribench.run import stopping
from mribench.train import checkpoints
from mribench.train.checkpoints import Checkpoints, FitState
from mribench.train.engine import Trainee, feature_loader, fit

CFG = TrainingConfig(epochs=4, lr=0.05, optimizer="adam", scheduler="cosine", batch_size=8)
# what a format-1 file holds: a checkpoint written by any earlier version of format 1 resumes
FORMAT_1 = {"format", "run_key", "extra", "epoch", "model", "optimizer", "scheduler", "scaler",
            "history", "best_epoch", "best_loss", "best_state", "waited", "batch", "rng"}


def _fit(ckpt=None, on_batch=None, gradual=False):
    """A small net with dropout (it draws from torch's RNG) on shuffled batches (their order
    comes from the loader's own generator), cosine schedule, Adam: every state must resume.
    gradual: the first layer joins the optimizer at epoch 2, as gradual unfreezing does."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    net[0].requires_grad_(not gradual)

    def groups():
        first = [p for p in net[0].parameters() if p.requires_grad]
        return ([{"params": first, "name": "backbone"}] if first else []) + \
            [{"params": list(net[3].parameters()), "name": "head"}]

    def unfreeze(epoch: int) -> bool:
        if gradual and epoch == 1 and not net[0].weight.requires_grad:
            net[0].requires_grad_(True)
            return True
        return False
    train = feature_loader(x[:64], y[:64], 8, True, seed=0)
    val = feature_loader(x[64:], y[64:], 8, False, seed=0)
    result = fit(Trainee(net, net.train, groups, unfreeze), train, val, CFG, "cpu",
                 on_batch=on_batch, ckpt=ckpt)
    return result, net.state_dict()


@pytest.mark.parametrize("gradual", [False, True], ids=["fixed", "gradual"])
def test_sigterm_mid_epoch_checkpoints_that_batch_and_the_resumed_fit_is_identical(tmp_path,
                                                                                   gradual):
    reference, ref_state = _fit(gradual=gradual)

    def send_sigterm(batch: int, _total: int) -> None:
        if seen.append(batch) or len(seen) == 8 + 3:  # epoch 2, after its third batch
            os.kill(os.getpid(), signal.SIGTERM)

    seen: list[int] = []
    ckpt = Checkpoints.open(tmp_path, "key", every=1)
    with pytest.raises(stopping.Stopped) as stop, stopping.on_signals():
        _fit(ckpt, send_sigterm, gradual)
    assert stop.value.exit_code == 143
    saved = torch.load(ckpt.file, weights_only=True)
    assert (saved["epoch"], saved["batch"]) == (1, 3)  # epoch 1 done, 3 batches of epoch 2
    assert set(saved) == FORMAT_1 | {"sums", "rng_epoch_start"}

    resumed = Checkpoints.open(tmp_path, "key", every=1)
    assert resumed.describe(CFG.epochs) == "epoch 2 of 4, batch 3"
    result, state = _fit(resumed, gradual=gradual)
    assert result.history == [{**r, **{k: result.history[i][k] for k in r if "second" in k
                                       or k == "images_per_s"}}
                              for i, r in enumerate(reference.history)]
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)


def test_the_file_keeps_format_1s_keys_and_reads_back_as_the_fit_state(tmp_path):
    # FitState changing what the file holds must bump checkpoints.FORMAT (older files are then
    # refused in one line, never misread)
    ckpt = Checkpoints.open(tmp_path, "key", every=1)
    result, _ = _fit(ckpt)
    saved = torch.load(ckpt.file, weights_only=True)
    assert checkpoints.FORMAT == 1 and set(saved) == FORMAT_1
    state = FitState.from_saved(saved)
    assert (state.epoch, state.mid_epoch, state.best_epoch) == (4, None, result.best_epoch)
    assert state.history == result.history


def test_a_checkpoint_of_another_run_key_is_not_resumed(tmp_path):
    ckpt = Checkpoints.open(tmp_path, "a", every=1)
    _fit(ckpt)
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "last.pt").rename(tmp_path / "b" / "last.pt")  # keyed inside the file too
    assert Checkpoints.open(tmp_path, "b", every=1).saved is None


def _cell_metrics(db: Path) -> tuple[dict, dict]:
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("resume")
    (run,) = [r for r in client.search_runs([exp.experiment_id], "tags.role = 'cell'")
              if r.info.status == "FINISHED"]
    timing = ("second", "images_per_s", "memory", "rss", "wall")
    return {k: v for k, v in run.data.metrics.items() if not any(t in k for t in timing)}, \
        run.data.tags


def test_a_cell_killed_after_epoch_two_resumes_and_ends_with_identical_metrics(tmp_path):
    suite = {"name": "resume", "experiment": "resume",
             "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 32}, "augment": {"hflip": True},
             "training": {"epochs": 20, "batch_size": 4}, "models": [{"name": "test_resnet"}],
             "strategies": ["scratch"], "artifacts": {"model": "none"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    base = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "mribench", "suite", "s.yaml"]

    def env(db: str) -> dict:
        return {**base, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / db}"}

    subprocess.run(command, cwd=tmp_path, env=env("whole.db"), check=True, capture_output=True,
                   timeout=300)
    killed = subprocess.Popen(command, cwd=tmp_path, env=env("killed.db"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epoch, deadline = 0, time.monotonic() + 240
    while epoch < 2 and time.monotonic() < deadline and killed.poll() is None:
        for file in (tmp_path / "cache" / "checkpoints").glob("*/last.pt"):
            try:
                epoch = torch.load(file, weights_only=True)["epoch"]
            except (OSError, RuntimeError, EOFError):
                pass  # being replaced right now
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    # the epoch the rerun resumes from is the checkpoint left at the kill (on an idle machine an
    # epoch takes a fraction of a second: the cell may have gone on past the epoch polled)
    left = list((tmp_path / "cache" / "checkpoints").glob("*/last.pt"))
    assert left, "the kill landed after the cell had finished"
    epoch = torch.load(left[0], weights_only=True)["epoch"]
    assert 2 <= epoch < 20, "the kill did not land between epoch 2 and the end"
    done = subprocess.run(command, cwd=tmp_path, env=env("killed.db"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"from its checkpoint: epoch {epoch} of 20" in done.stderr
    whole, _ = _cell_metrics(tmp_path / "whole.db")
    resumed, tags = _cell_metrics(tmp_path / "killed.db")
    assert tags["resumed_from"] == f"epoch {epoch} of 20"
    assert resumed == whole
    assert not list((tmp_path / "cache" / "checkpoints").glob("*/last.pt"))
