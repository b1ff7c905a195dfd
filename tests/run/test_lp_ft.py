"""lp_ft on real images (the 7023 set's shipped sample): stage 2 starts from exactly the head the
probe fitted, with the pretrained backbone untouched by stage 1; both stages log into one
run with stage 2's epochs after stage 1's; a cell killed mid-stage-2 resumes there and ends
with the metrics of an uninterrupted one."""
from __future__ import annotations

import copy

import pytest
import torch
from mlflow.tracking import MlflowClient

from mribench.config.suite_file import load_suite
from mribench.matrix import expand
from mribench.run import cell as cell_module
from mribench.run import two_stage
from mribench.run.suite import SuiteOptions, run_suite
from mribench.train.checkpoints import Checkpoints

PROBE, TUNE = 2, 2
SUITE = {"experiment": "lp-ft", "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
         "preprocess.image_size": 32, "augment": {}, "explain.methods": [],
         "training.epochs": TUNE, "training.batch_size": 8, "training.checkpoint_every": 1,
         "models": [{"name": "test_resnet"}],
         "strategies": [{"name": "lp_ft", "probe_epochs": PROBE, "ft_lr_scale": 0.5}],
         "artifacts": {"model": "none"}}


def _run(tmp_path, monkeypatch, db: str, cache: str = "cache") -> dict:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / db}")
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / cache))
    suite = load_suite("smoke", SUITE)
    (tmp_path / "no-data").mkdir(exist_ok=True)  # the sample ships with the package
    code = run_suite(suite, SuiteOptions(device="cpu", data_dir=str(tmp_path / "no-data")))
    client = MlflowClient()
    exp = client.get_experiment_by_name("lp-ft")
    runs = client.search_runs([exp.experiment_id], "tags.role = 'cell'",
                              order_by=["attributes.start_time DESC"])
    return {"code": code, "run": runs[0], "client": client, "suite": suite}


def test_stage_two_starts_from_the_probes_head(tmp_path, monkeypatch, weights_dir, one_thread):
    calls, real = [], cell_module._train

    def recording(cell, built, *args, **kwargs):
        entry = (copy.deepcopy(built.head.state_dict()),
                 copy.deepcopy(built.backbone.state_dict()))
        out = real(cell, built, *args, **kwargs)
        calls.append({"stage": kwargs.get("stage", ""), "head_in": entry[0],
                      "backbone_in": entry[1], "head_out": copy.deepcopy(built.head.state_dict()),
                      "backbone_out": copy.deepcopy(built.backbone.state_dict()),
                      "trainable": sum(p.numel() for p in built.model.parameters()
                                       if p.requires_grad)})
        return out
    monkeypatch.setattr(cell_module, "_train", recording)
    done = _run(tmp_path, monkeypatch, "a.db")
    assert done["code"] == 0
    probe, tune = calls
    assert probe["stage"] == two_stage.PROBE and tune["stage"] == ""

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)
    assert not same(probe["head_in"], probe["head_out"])  # the probe trained the head ...
    assert same(probe["backbone_in"], probe["backbone_out"])  # ... and nothing else (BN stats too)
    assert same(tune["head_in"], probe["head_out"])  # stage 2 starts from exactly that head
    assert not same(tune["backbone_in"], tune["backbone_out"])  # and moves the backbone
    run, client = done["run"], done["client"]
    assert probe["trainable"] < tune["trainable"] == int(run.data.params["params_trainable"])
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))
    assert steps == list(range(1, PROBE + TUNE + 1))
    assert run.data.metrics["probe_epochs_run"] == PROBE and run.data.metrics["epochs_run"] == TUNE
    assert run.data.tags["training_path"] == "probe (feature_reuse) then end_to_end"
    lrs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
    assert lrs[PROBE + 1] == pytest.approx(lrs[1] * 0.5)  # the fine-tuning stage's smaller rate
    files = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/learning_curves_probe.png"} <= files
    assert run.data.metrics["optimizer_state_mb"] > 0 and run.data.metrics["fit_seconds"] > 0


def test_a_cell_stopped_in_stage_two_resumes_there(tmp_path, monkeypatch, weights_dir,
                                                   one_thread):
    whole = _run(tmp_path, monkeypatch, "whole.db", cache="cache-whole")
    tuned_key = two_stage.stage_cells(expand(whole["suite"])[0])[1].run_key
    real_write = Checkpoints.write

    def crash_after_stage_two_epoch_one(self, state):
        real_write(self, state)
        if self.run_key == tuned_key and state["epoch"] == 1:
            raise RuntimeError("killed")
    monkeypatch.setattr(Checkpoints, "write", crash_after_stage_two_epoch_one)
    crashed = _run(tmp_path, monkeypatch, "killed.db")
    assert crashed["code"] != 0 and crashed["run"].info.status == "FAILED"
    monkeypatch.setattr(Checkpoints, "write", real_write)
    resumed = _run(tmp_path, monkeypatch, "killed.db")
    assert resumed["code"] == 0
    run = resumed["run"]
    assert run.data.tags["resumed_from"] == f"epoch 1 of {TUNE}"  # stage 2's own checkpoint
    for name in ("test_accuracy", "test_loss", "probe_best_epoch", "best_epoch"):
        assert run.data.metrics[name] == whole["run"].data.metrics[name], name
    history = sorted((m.step, m.value) for m in resumed["client"].get_metric_history(
        run.info.run_id, "val_loss"))
    assert history == sorted((m.step, m.value) for m in whole["client"].get_metric_history(
        whole["run"].info.run_id, "val_loss"))
    assert not list((tmp_path / "cache" / "checkpoints").glob("*/last.pt"))  # both stages gone
