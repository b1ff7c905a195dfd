"""A smoke-sized transfer_methods run through the installed console script, from a folder
outside the repository, on the embedded sample: every new strategy beside the linear probe and
full fine-tuning finishes a cell with Grad-CAM and a logged model; the HTML report carries the
accuracy-cost frontier (figure and table); the lora cell's logged model (adapters merged)
repeats the cell's own test probabilities through `mribench predict`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from mribench.data.registry import SAMPLE_DIR

STRATEGIES = ["linear_probe", "bitfit", "norm", {"name": "lora", "rank": 4},
              {"name": "lp_ft", "probe_epochs": 1}, "full"]


def mribench(args, env, cwd):
    done = subprocess.run([shutil.which("mribench"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_every_method_runs_and_the_report_draws_the_frontier(tmp_path, weights_dir):
    suite = {"name": "methods", "experiment": "methods",
             "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 32}, "training": {"epochs": 1, "batch_size": 8},
             "models": [{"name": "test_resnet"}], "strategies": STRATEGIES, "seeds": [0],
             "explain": {"methods": ["gradcam"], "per_class": 1, "randomisation": "none",
                         "faithfulness": False}}
    (tmp_path / "methods.yaml").write_text(yaml.safe_dump(suite))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "BENCHMARK_WEIGHTS_DIR": str(weights_dir.parent)}
    mribench(["suite", "methods.yaml"], env, tmp_path)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("methods")
    runs = {r.data.tags["strategy"]: r
            for r in client.search_runs([exp.experiment_id], "tags.role = 'cell'")}
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs.values())
    for run in runs.values():
        assert {"fit_seconds", "peak_rss_mb", "model_size_mb"} <= set(run.data.metrics)
        assert any(k.startswith("gradcam") for k in run.data.metrics)
    trainable = {s: int(r.data.params["params_trainable"]) for s, r in runs.items()}
    assert trainable["linear_probe"] < trainable["bitfit"] < trainable["norm"] < trainable["full"]
    assert trainable["lora"] < trainable["full"] == trainable["lp_ft"]

    mribench(["report", "methods.yaml", "--out", "rep"], env, tmp_path)
    page = (tmp_path / "rep" / "index.html").read_text()
    section = page[page.index("<h2>Accuracy-cost frontier</h2>"):]
    section = section[:section.index("<h2>", 4)]
    assert "<img src='data:image/png;base64," in section and "on the frontier" in section
    table = pd.read_csv(tmp_path / "rep" / "frontier.csv")
    assert sorted(table["strategy"]) == sorted(runs)
    assert table["pareto_params_trainable"].any()
    # the cheapest configuration cannot be dominated on parameters
    assert table.loc[table["params_trainable"].idxmin(), "pareto_params_trainable"]

    logged = pd.read_csv(client.download_artifacts(runs["lora"].info.run_id,
                                                   "metrics/predictions.csv", str(tmp_path)))
    files = [str(SAMPLE_DIR / f) for f in logged["file"][:4]]
    done = mribench(["predict", "--suite", "methods.yaml", "--model", "test_resnet",
                     "--strategy", "lora", "--seed", "0", *files, "--json"], env, tmp_path)
    ours = pd.DataFrame(json.loads(done.stdout)["rows"])
    # predict gives the calibrated probabilities (the cell's temperature), as the cell logged them
    for c in ("glioma", "meningioma", "notumor", "pituitary"):
        cal = logged[f"calibrated_prob_{c}"][:4].to_numpy()
        assert abs(ours[f"prob_{c}"].to_numpy() - cal).max() < 1e-5


def test_a_tiny_vit_runs_every_new_method_with_gradcam_lime_and_artefacts(tmp_path):
    """timm's test_vit (weights from BENCHMARK_WEIGHTS_DIR) through bitfit, norm, lora (on the
    attention qkv and proj) and lp_ft, each with Grad-CAM on a block's tokens, LIME and one MRI
    artefact."""
    import timm
    import torch

    (tmp_path / "w").mkdir()
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit").state_dict(), tmp_path / "w" / "test_vit.pth")
    suite = {"name": "vit", "experiment": "vit",
             "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 32}, "training": {"epochs": 1, "batch_size": 8},
             "models": [{"name": "timm:test_vit"}], "seeds": [0],
             "strategies": ["bitfit", "norm", {"name": "lora", "rank": 2},
                            {"name": "lp_ft", "probe_epochs": 1}],
             "explain": {"methods": ["gradcam", "lime"], "per_class": 1, "lime_samples": 20,
                         "randomisation": "none", "faithfulness": False},
             "robustness": {"artefacts": ["noise"], "severities": [2]}}
    (tmp_path / "vit.yaml").write_text(yaml.safe_dump(suite))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "BENCHMARK_WEIGHTS_DIR": str(tmp_path / "w")}
    mribench(["suite", "vit.yaml"], env, tmp_path)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("vit")
    runs = {r.data.tags["strategy"]: r
            for r in client.search_runs([exp.experiment_id], "tags.role = 'cell'")}
    assert sorted(runs) == ["bitfit", "lora", "lp_ft", "norm"]
    for run in runs.values():
        assert run.info.status == "FINISHED" and "robust_mca" in run.data.metrics
        files = {a.path for a in client.list_artifacts(run.info.run_id, "explanations")}
        assert {"explanations/gradcam.png", "explanations/lime.png"} <= files
    assert runs["lora"].data.params["lora_targets"] == "12"  # 6 blocks x (qkv, proj)
