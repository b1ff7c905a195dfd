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
    """At the same rates a frozen backbone that reuses its features costs ONE forward pass over
    its images plus head epochs on stored features (not epochs x passes); with augmentation it
    runs its own (frozen: head-only) training step every epoch."""
    rates = {"train": [0.03, 0.03, 0.03], "forward": [0.01, 0.01, 0.01],
             "head": [1e-5, 1e-5, 1e-5]}
    cells = expand(load_suite("reference", {"explain.methods": []}))
    n = estimate.Sizes(train=1000, val=200, test=300, classes=4)
    frozen = next(c for c in cells if c.strategy.name == "frozen")
    reuse = estimate.cell_cost(frozen, rates, n)
    augmented = replace(frozen, augment=frozen.augment.model_copy(update={"hflip": True}))
    recompute = estimate.cell_cost(augmented, rates, n)
    assert reuse["path"] == "feature reuse" and recompute["path"] == "end to end"
    epochs = frozen.training.epochs
    assert epochs == 30
    externals = 3264 + 253
    # mid estimate: set-up + one pass (train + val) + head epochs + test and the external sets
    assert reuse["forward_images"] == 1200 + 300 + externals
    assert reuse["seconds"][1] == pytest.approx(15 + 1200 * 0.01 + epochs * 1200 * 1e-5
                                                + (300 + externals) * 0.01)
    # ten times the epochs add only head steps: 27 more epochs x 1200 images x 10 us = 0.3 s
    longer = replace(frozen, training=frozen.training.model_copy(update={"epochs": 300}))
    more = estimate.cell_cost(longer, rates, n)["seconds"][1] - reuse["seconds"][1]
    assert more == pytest.approx(270 * 1200 * 1e-5)
    assert recompute["seconds"][1] == pytest.approx(15 + epochs * (1000 * 0.03 + 200 * 0.01)
                                                    + (300 + externals) * 0.01)
    low, mid, high = recompute["seconds"]
    assert low < mid < high  # earliest early stop ... every epoch, x 1.2 pipeline allowance


def test_estimate_calibrates_at_the_cells_batch_with_its_own_training_step(monkeypatch):
    """The reference suite (batch 32) is calibrated at batch 16 on CPU (capped), at 32 on a
    GPU; frozen cells that reuse features ask for no training step, partial2 cells for theirs;
    the per-image rate enters the cost as images x seconds per image."""
    from mribench.run import calibrate, decode_cost

    asked, load = [], [1.0]

    def fake_rates(model, size, channels, batch, classes, device, precision, cache_dir=None,
                   fresh=False, strategy=None):
        asked.append((size, batch, calibrate.strategy_key(strategy)))
        return {"forward": [0.01] * 3, "head": [0.0] * 3, "train": [0.02] * 3, "load": load[0]}
    monkeypatch.setattr(calibrate, "rates", fake_rates)
    monkeypatch.setattr(calibrate, "describe", str)  # names the GPU: none on a CPU machine
    monkeypatch.setattr(decode_cost, "stores", lambda cells, data_dir, cache_dir: [])
    cells = expand(load_suite("reference"))
    assert {c.training.batch_size for c in cells} == {32}
    est = estimate.estimate(cells, "cpu", None)
    assert set(asked) == {(224, 16, "none"), (128, 16, "partial2")}
    assert {r["batch"] for r in est["rows"]} == {16}
    big = [r for r in est["rows"] if r["dataset"] == "brain-tumor-mri-7023"]
    assert all(r["high_seconds"] < 2 * r["seconds"] for r in big)  # load 1.0: not busy
    load[0] = 9.0  # a calibration on a busy machine: the high end allows for the load changing
    busy = estimate.estimate(cells, "cpu", None)
    assert all(r["high_seconds"] >= 2 * r["seconds"] - 0.2 for r in busy["rows"])  # rounding
    assert all(r["low_seconds"] <= r["seconds"] / 2 + 0.2 for r in busy["rows"])
    assert busy["high_seconds"] >= 2 * busy["seconds"] - 100  # startup allowances aside
    asked.clear()
    estimate.estimate(cells, "cuda:0", None)
    assert {a[1] for a in asked} == {32}
    # 7023 partial2 at 128 px: 3 epochs x (5967 train x 0.02 + 1053 val x 0.01) + test 1311 and
    # externals 3517 x 0.01 + 15 s set-up
    row = next(r for r in est["rows"] if r["dataset"] == "brain-tumor-mri-7023"
               and r["strategy"] == "partial2")
    n = estimate.sizes(cells[0].dataset, cells[0].split, None)
    assert row["seconds"] == pytest.approx(
        15 + 3 * (n.train * 0.02 + n.val * 0.01) + (n.test + 3264 + 253) * 0.01, abs=0.1)


def test_decoding_is_costed_while_the_pixel_store_is_cold_and_free_once_warm(tmp_path):
    """The sample set's 64 real files: a measured decode rate x its images while the cache
    folder has no pixel store for it; nothing once a run has filled the store."""
    from mribench.config.schema import PreprocessConfig
    from mribench.data import images
    from mribench.data.registry import SAMPLE_DIR
    from mribench.files import file_sha256
    from mribench.run import decode_cost

    suite = load_suite("smoke", {"datasets": [{"name": "brain-tumor-mri-7023-sample"}]})
    cells = expand(suite)
    cold = decode_cost.stores(cells, None, str(tmp_path))
    assert [(d["cache"], d["files"]) for d in cold] == [("cold", 64)]
    assert 0 < cold[0]["seconds_per_image"] < 1 and cold[0]["seconds"] > 0
    pre = cells[0].preprocess
    files = sorted(p for p in SAMPLE_DIR.rglob("*.jpg"))
    sources = {file_sha256(p): p for p in files}
    images.set_cache_dir(tmp_path)
    try:
        store = images.open_store(pre, sources)
        for sha, path in sources.items():
            images.inspect(path, sha, store)
        store.finish()
    finally:
        images.set_cache_dir(None)
    warm = decode_cost.stores(cells, None, str(tmp_path))
    assert [(d["cache"], d["seconds"]) for d in warm] == [("warm", 0)]
    assert isinstance(pre, PreprocessConfig)


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


def test_calibration_batch_is_the_cells_own_capped_on_cpu_with_a_strategy_step():
    """Batches of 2 overstated CPU cost ~5x (docs/speed.md): the cell's batch, capped at 16 on
    CPU; a warm-up batch, then at least three timed ones; partial trains its last blocks only
    (cheaper than a full step), feature reuse needs no training step."""
    from mribench.config.schema import StrategyConfig
    from mribench.run import calibrate

    assert calibrate.batch_for(32, "cpu") == 16 and calibrate.batch_for(8, "cpu") == 8
    assert calibrate.batch_for(32, "cuda:0") == 32
    model = ModelConfig(name="test_resnet")
    rates = calibrate.measure(model, 32, 3, 8, 4, "cpu", "auto",
                              StrategyConfig(name="partial", blocks=1))
    for name in ("train", "forward", "head"):
        fast, median, slow = rates[name]
        assert 0 < fast <= median <= slow
    reuse = calibrate.measure(model, 32, 3, 8, 4, "cpu", "auto", None)
    assert "train" not in reuse and reuse["forward"][0] > 0
    assert calibrate.strategy_key(StrategyConfig(name="partial", blocks=2)) == "partial2"
    assert calibrate.strategy_key(StrategyConfig(name="scratch")) == calibrate.WHOLE
