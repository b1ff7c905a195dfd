"""Precision, divergence and the device paths, through the real suite on a tiny real subset."""
from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from mribench.config.schema import TrainingConfig
from mribench.config.suite_file import load_suite
from mribench.matrix import expand
from mribench.run import cell as cell_module
from mribench.run.suite import SuiteOptions, run_suite
from mribench.train import precision as fastpath

ONE = {"training.epochs": 1, "explain.methods": [], "experiment": "fast-test",
       "models": [{"name": "test_resnet"}]}


@pytest.fixture
def run(mlflow_store, data_dir, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))

    def go(**overrides):
        suite = load_suite("smoke", {**ONE, **overrides})
        code = run_suite(suite, SuiteOptions(device="cpu", data_dir=str(data_dir)))
        client = MlflowClient()
        exp = client.get_experiment_by_name("fast-test")
        (cell_run,) = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
        return code, cell_run
    return go


def test_bf16_autocast_trains_an_epoch_on_cpu(run):
    code, r = run(**{"training.precision": "bf16", "explain.methods": ["gradcam"]})
    assert code == 0 and r.info.status == "FINISHED"
    assert r.data.params["training.precision"] == "bf16"
    assert r.data.params["precision_resolved"] == "bf16"
    m = r.data.metrics
    for key in ("train_loss", "val_loss", "test_accuracy", "test_log_loss", "test_roc_auc_macro"):
        assert math.isfinite(m[key]), key


def test_auto_is_fp32_on_cpu_and_keeps_earlier_run_keys():
    assert fastpath.resolve_precision("auto", "cpu") == "fp32"
    suite = load_suite("smoke", ONE)
    auto = expand(suite)[0].run_key
    assert expand(load_suite("smoke", {**ONE, "training.precision": "bf16"}))[0].run_key != auto
    # the hash of a cell written before precision/deterministic/max_loss existed is unchanged
    before = expand(load_suite("smoke", ONE))[0]
    resolved = before.resolved()
    for key in ("precision", "deterministic", "max_loss", "max_loss_batches", "compile"):
        resolved["training"].pop(key)
    from mribench.matrix import _digest
    assert _digest(resolved) == auto


def test_injected_nan_outputs_stop_the_cell_at_the_first_batch(run, monkeypatch, capsys):
    real_build, calls = cell_module.build, []

    def nan_model(*args, **kwargs):
        built = real_build(*args, **kwargs)
        built.model.register_forward_hook(lambda m, i, out: calls.append(1) or out * math.nan)
        return built

    monkeypatch.setattr(cell_module, "build", nan_model)
    code, r = run()
    assert code == 1 and r.info.status == "FAILED"
    error = r.data.tags["error"]
    assert "diverged at epoch 1, batch 1 of" in error and "learning rate 0.001" in error
    assert "non-finite loss (nan)" in error and r.data.tags["failure"] == "diverged"
    assert r.data.metrics["diverged_epoch"] == 1 and r.data.metrics["diverged_batch"] == 1
    assert len(calls) == 1  # stopped at once: no second batch, no validation pass
    assert "Traceback" not in capsys.readouterr().err


def test_exploding_learning_rate_fails_instead_of_finishing(run):
    code, r = run(**{"training.lr": 10, "training.epochs": 3})
    assert code == 1 and r.info.status == "FAILED"
    assert "learning rate 10" in r.data.tags["error"]
    assert "above training.max_loss = 100" in r.data.tags["error"] or \
        "non-finite" in r.data.tags["error"]


def test_max_loss_is_validated():
    with pytest.raises(ValueError):
        TrainingConfig(max_loss=0)
    assert TrainingConfig(max_loss=None).max_loss is None


def test_auto_workers_and_layout_follow_the_device():
    assert fastpath.workers("auto", "cpu") == 0 and fastpath.workers(3, "cpu") == 3
    assert not fastpath.channels_last("cpu")
    assert fastpath.configure(False, "cpu")["cudnn_benchmark"] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_picks_mixed_precision_and_channels_last():
    name = fastpath.resolve_precision("auto", "cuda")
    assert name == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    net = fastpath.place(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), "cuda")
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fastpath.configure(False, "cuda")["cudnn_benchmark"] is True
    assert fastpath.workers("auto", "cuda") >= 0
