"""A newcomer's first command: the dry run says what the suite needs on this machine (data,
weights: which, from where, the fetch command) and what it will cost here; the preflight
reports missing data and missing weights in one go; the live display's remaining times."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mribench.config.schema import ModelConfig, SplitConfig
from mribench.config.suite_file import load_suite
from mribench.matrix import expand
from mribench.models import registry, weights
from mribench.run import estimate, needs
from mribench.run.eta import Eta

FOUR_CLASS_HUB_MODELS = {"densenet121", "efficientnet_b0", "googlenet", "mobilenet_v2",
                         "resnet18", "resnet50", "shufflenet_v2", "vgg16"}


def _bare_env(tmp: Path) -> dict:
    """No weights anywhere (empty hub caches, offline), no data, caches in `tmp`."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "BENCHMARK_", "HF_", "TORCH_"))}
    return {**keep, "HF_HOME": str(tmp / "hf"), "TORCH_HOME": str(tmp / "torch"),
            "BENCHMARK_OFFLINE": "1", "BENCHMARK_CACHE_DIR": str(tmp / "cache"),
            "BENCHMARK_DATA_DIR": str(tmp / "no-data"), "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "MPLBACKEND": "Agg"}


def _mribench(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("mribench"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_dry_run_of_four_class_without_weights_lists_them_with_fetch_commands_and_a_cost(
        tmp_path):
    """From outside the repository, with the installed script; images shrunk to 32 px so the
    calibration of nine CNNs takes seconds (the matrix and the needs are the suite's own)."""
    env = _bare_env(tmp_path)
    (tmp_path / "no-data").mkdir()
    shrink = ["--set", "preprocess.image_size=32"]
    done = _mribench(["suite", "four_class", "--dry-run", "--json", *shrink], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    found = out["needs"]
    assert set(found["weights_missing"]) == FOUR_CLASS_HUB_MODELS  # lite0's ship with pip
    fetch = found["fetch_weights"]
    assert fetch.startswith("mribench models fetch ") and "BENCHMARK_WEIGHTS_DIR" in fetch
    assert set(fetch.split("--dir")[0].split()[3:]) == FOUR_CLASS_HUB_MODELS
    by_model = {w["model"]: w for w in found["weights"]}
    assert by_model["resnet50"]["url"].startswith("https://huggingface.co/timm/resnet50.tv_in1k")
    assert by_model["resnet50"]["weight_set"] == "ImageNet-1k"
    assert 90 < by_model["resnet50"]["megabytes"] < 110  # 25.6 M float32 parameters
    assert found["download_megabytes"] > 500  # VGG16 alone is ~550 MB
    assert [d["name"] for d in found["data"] if not d["found"]] == ["brain-tumor-mri-7023"]
    assert "Kaggle" in found["data"][0]["fetch"]
    cost = out["estimate"]
    assert cost["cells"] == 111 and cost["unknown_cells"] == 0
    assert 0 < cost["low_seconds"] <= cost["seconds"] <= cost["high_seconds"]
    # 7023 set, official split, 15% validation: 4855 training images x 30 epochs per cell;
    # the three seeds of a (model, strategy) are one group
    resnet_full = next(r for r in cost["rows"] if r["model"] == "resnet50"
                       and r["strategy"] == "full")
    assert resnet_full["cells"] == 3 and resnet_full["images_x_epochs"] == 3 * 4855 * 30
    # the same as text: what a user reads
    text = _mribench(["suite", "four_class", "--dry-run", *shrink], env, tmp_path)
    assert text.returncode == 0, text.stderr[-3000:]
    assert "mribench models fetch densenet121" in text.stdout
    assert "estimated cost on this machine" in text.stdout and "suite:" in text.stdout
    assert "calibrating" not in text.stderr  # the first dry run's calibration was cached
    assert list((tmp_path / "cache" / "calibration").glob("*.json"))


def test_preflight_reports_missing_data_and_missing_weights_in_one_go(tmp_path):
    env = _bare_env(tmp_path)
    (tmp_path / "no-data").mkdir()
    suite = {"name": "needs", "experiment": "needs",
             "datasets": [{"name": "brain-tumor-mri-7023"}],
             "preprocess": {"image_size": 32}, "training": {"epochs": 1},
             "models": [{"name": "test_resnet"}], "strategies": ["frozen"], "seeds": [0]}
    (tmp_path / "needs.yaml").write_text(yaml.safe_dump(suite))
    done = _mribench(["suite", "needs.yaml"], env, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr
    assert "1 dataset(s) not found" in err and "mribench data fetch brain-tumor-mri-7023" in err
    assert "pretrained weights of 1 model(s)" in err and "test_resnet" in err
    assert "mribench models fetch test_resnet --dir weights" in err
    assert "scratch" not in err  # never a strategy the suite does not use
    assert not (tmp_path / "mlflow.db").exists() or "Traceback" not in err


def test_weight_sets_are_named_by_the_data_they_were_trained_on():
    assert weights.weight_set(registry.get("vit_small_patch14_dinov2")).startswith("LVD-142M")
    assert weights.weight_set(registry.get("vit_small_patch16_224")) == \
        "ImageNet-21k, fine-tuned on ImageNet-1k"
    assert weights.weight_set(registry.get("googlenet")) == "ImageNet-1k"
    cells = list({c.model.name: c for c in expand(load_suite("modern_backbones"))
                  if c.strategy.name != "scratch"}.values())  # one cell per model
    wanted = {w.model: w for w in needs.weight_needs(cells)}
    assert "ImageNet" not in wanted["vit_small_patch14_dinov2"].weight_set
    message = needs.missing_message([], [(w, "hub: offline") for w in wanted.values()])
    assert "scratch" not in message and "mribench models fetch" in message


def test_split_sizes_follow_the_registry_counts_and_fractions():
    ds = load_suite("four_class").datasets[0]
    n = estimate.sizes(ds, SplitConfig(protocol="official", val_fraction=0.15), None)
    assert (n.train, n.val, n.test, n.classes) == (4855, 857, 1311, 4)
    small = ds.model_copy(update={"train_per_class": 10})
    assert estimate.sizes(small, SplitConfig(), None).train == 40
    binary = load_suite("reference").datasets[2]
    folds = estimate.sizes(binary, binary.split, None)
    assert folds.test == round(253 / 5) and folds.train + folds.val + folds.test == 253


def test_feature_reuse_is_costed_as_one_pass_and_end_to_end_per_epoch():
    """At the same rates a frozen backbone that reuses its features costs one forward pass over
    the images; with augmentation it recomputes them every epoch; full fine-tuning trains."""
    rates = {"train": [0.03, 0.03, 0.03], "forward": [0.01, 0.01, 0.01]}
    cells = expand(load_suite("reference", {"explain.methods": []}))
    n = estimate.Sizes(train=1000, val=200, test=300, classes=4)
    frozen = next(c for c in cells if c.strategy.name == "frozen")
    reuse = estimate.cell_cost(frozen, rates, n)
    augmented = replace(frozen, augment=frozen.augment.model_copy(update={"hflip": True}))
    recompute = estimate.cell_cost(augmented, rates, n)
    assert reuse["path"] == "feature reuse" and recompute["path"] == "end to end"
    epochs = frozen.training.epochs
    # mid estimate: set-up + one pass (train + val) + test and the external sets
    externals = 3264 + 253
    assert reuse["seconds"][1] == pytest.approx(30 + (1200 + 300 + externals) * 0.01)
    assert recompute["seconds"][1] == pytest.approx(30 + epochs * 1200 * 0.01
                                                    + (300 + externals) * 0.01)
    low, mid, high = recompute["seconds"]
    assert low < mid < high  # earliest early stop ... every epoch, x 1.2 pipeline allowance


def test_remaining_times_extrapolate_from_what_has_run():
    now = [0.0]
    eta = Eta(cells_left=3, clock=lambda: now[0])
    eta.cell_started(epochs=4)
    now[0] = 10.0
    eta.batch(5, 10)  # half the first epoch's batches in 10 s
    assert eta.epoch_left() == pytest.approx(10.0)
    assert eta.cell_left() == pytest.approx(4 * 20 - 10)
    now[0] = 20.0
    eta.epoch_finished(1, 4)
    assert eta.cell_left() == pytest.approx(60.0)  # three epochs of 20 s
    now[0] = 80.0
    eta.epoch_finished(4, 4)
    eta.cell_finished(trained=True)  # the first cell took 80 s
    assert eta.suite_left() == pytest.approx(2 * 80.0)
    eta.cell_started(epochs=4)
    eta.cell_finished(trained=False)  # a skipped cell costs nothing and teaches nothing
    assert eta.suite_left() == pytest.approx(80.0)
    assert Eta.say(125, "cell") == "cell ~2 min 05 s left"


def test_calibration_batch_is_small_on_cpu_and_the_cells_own_on_gpu():
    from mribench.run import calibrate

    assert calibrate.batch_for(32, "cpu") == 2 and calibrate.batch_for(32, "cuda:0") == 32
    rates = calibrate.measure(ModelConfig(name="test_resnet"), 32, 3, 2, 4, "cpu", "auto")
    for name in ("train", "forward"):
        fast, median, slow = rates[name]
        assert 0 < fast <= median <= slow
