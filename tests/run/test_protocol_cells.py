"""End-to-end through the installed `mribench suite`, from a folder outside the repository, on
the embedded sample: knn and linear_probe cells beside a trained one, and a ViT and a ConvNeXt
in the `timm:` form through scratch and partial with Grad-CAM and LIME, every pretrained
weight coming from a pre-filled Hugging Face cache with the hub offline."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import timm
import torch
import yaml
from mlflow.tracking import MlflowClient

from hf_cache import fill_hf_cache

SUITE = {
    "name": "protocols", "experiment": "protocols-test",
    "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
    "split": {"protocol": "official", "val_fraction": 0.25},
    "preprocess": {"image_size": 48}, "training": {"epochs": 1, "batch_size": 8},
    "models": [{"name": "test_resnet", "strategies": ["knn", "linear_probe"]},
               {"name": "timm:test_vit", "strategies": ["scratch", "partial"]},
               {"name": "timm:test_convnext", "strategies": ["scratch", "partial"]}],
    "strategies": [{"name": "knn", "k": 5}, "linear_probe", "scratch",
                   {"name": "partial", "blocks": 2}],
    "explain": {"methods": ["gradcam", "lime"], "per_class": 1, "lime_samples": 20,
                "randomisation": "none", "faithfulness": False},
}


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocols")
    torch.manual_seed(0)
    for name in ("test_resnet", "test_vit", "test_convnext"):
        net = timm.create_model(name)
        fill_hf_cache(tmp / "hf" / "hub", net.pretrained_cfg["hf_hub_id"], net.state_dict())
    (tmp / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MLFLOW_", "HF_", "BENCHMARK_WEIGHTS"))}
    env = {**clean, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(tmp / "cache"), "HF_HOME": str(tmp / "hf"),
           "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    exe = shutil.which("mribench", path=os.path.dirname(sys.executable))
    done = subprocess.run([exe, "suite", "suite.yaml"], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("protocols-test")
    runs = {(r.data.tags["model"], r.data.tags["strategy"]): r
            for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("role") == "cell"}
    return client, runs, done.stderr


def artifacts(client, run) -> set[str]:
    out = set()
    for entry in client.list_artifacts(run.info.run_id):
        out |= ({a.path for a in client.list_artifacts(run.info.run_id, entry.path)}
                if entry.is_dir else {entry.path})
    return out


def test_every_cell_finishes_with_the_same_test_logging(suite_run):
    client, runs, _ = suite_run
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs.values())
    for run in runs.values():
        files = artifacts(client, run)
        assert {"metrics/predictions.csv", "plots/confusion_matrix_clean.png",
                "explanations/lime.png"} <= files
        assert 0 <= run.data.metrics["test_clean_accuracy"] <= 1
        assert run.data.params["weight_source"] in ("scratch", f"hub:{_hub(run)}")


def _hub(run) -> str:
    return run.data.tags["model"].removeprefix("timm:") + ".r160_in1k"


def test_knn_cell_has_no_epochs_and_says_what_it_skipped(suite_run):
    client, runs, stderr = suite_run
    knn = runs[("test_resnet", "knn")]
    assert knn.data.metrics["epochs_run"] == 0 and "best_epoch" not in knn.data.metrics
    assert client.get_metric_history(knn.info.run_id, "train_loss") == []
    assert knn.data.tags["training"].startswith("none: knn")
    assert knn.data.params["knn_k_used"] == "5" and knn.data.params["model_head"] == "knn"
    files = artifacts(client, knn)
    assert "plots/learning_curves.png" not in files and "explanations/gradcam.png" not in files
    assert "no gradient" in knn.data.tags["explain_skipped"]
    assert "gradcam skipped (knn votes have no gradient" in stderr
    assert "knn, k=5, " in stderr
    assert knn.data.params["weight_source"] == "hub:test_resnet.r160_in1k"


def test_knn_cell_logs_a_model_that_repeats_its_test_predictions(suite_run, tmp_path):
    """The knn cell's logged model is its backbone and its fitted neighbour index: loaded back,
    it gives the cell's own predictions.csv."""
    import mlflow
    import pandas as pd

    from mribench.data.registry import SAMPLE_DIR

    client, runs, _ = suite_run
    knn = runs[("test_resnet", "knn")]
    assert knn.data.metrics["model_size_mb"] > 0
    mlflow.set_tracking_uri(client.tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{knn.info.run_id}/model")
    logged = pd.read_csv(client.download_artifacts(knn.info.run_id, "metrics/predictions.csv",
                                                   str(tmp_path)))
    ours = model.predict(pd.DataFrame({"path": [str(SAMPLE_DIR / f) for f in logged["file"]]}))
    assert list(ours["predicted"]) == list(logged["pred"])
    probs = [c for c in logged.columns if c.startswith("prob_")]
    # calibrated by default: a knn cell's temperature is a power of its vote fractions
    assert abs(ours[probs].to_numpy() - logged[[f"calibrated_{c}" for c in probs]].to_numpy()
               ).max() < 1e-6
    assert 0 < knn.data.metrics["temperature"] and "test_calibrated_ece" in knn.data.metrics


def test_linear_probe_trains_one_linear_layer_on_reused_features(suite_run):
    _, runs, _ = suite_run
    probe = runs[("test_resnet", "linear_probe")]
    assert probe.data.tags["training_path"] == "feature_reuse"
    assert probe.data.params["params_trainable"] == str(96 * 4 + 4)
    assert probe.data.metrics["epochs_run"] == 1


@pytest.mark.parametrize("model", ["timm:test_vit", "timm:test_convnext"])
def test_timm_models_train_and_explain_with_gradcam_and_lime(suite_run, model):
    client, runs, _ = suite_run
    for strategy in ("scratch", "partial"):
        run = runs[(model, strategy)]
        assert {"explanations/gradcam.png", "explanations/lime.png"} <= artifacts(client, run)
    vit = runs[("timm:test_vit", "partial")]
    assert vit.data.metrics["gradcam_map_side"] == 3  # 48 px / patch 16: the token grid


def test_vit_at_another_size_says_how_it_was_handled(suite_run):
    _, runs, stderr = suite_run
    tag = runs[("timm:test_vit", "partial")].data.tags["input_size_handling"]
    assert tag.startswith("created at img_size=48 (timm; native 160 px)")
    assert "pos_embed 1x101x64->1x10x64 resampled by timm's checkpoint filter" in tag
    assert f"timm:test_vit / partial / seed 0: {tag}" in stderr
