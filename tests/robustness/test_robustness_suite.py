"""The robustness block end to end: bad values refused with their YAML path, the artefact
figure from the console script, and a smoke-sized suite's metrics and report sections."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mribench.cli.main import main
from mribench.config.schema import SUITES_DIR
from mribench.data.registry import SAMPLE_DIR

SMOKE = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
ROBUST = {"artefacts": ["noise", "blur"], "severities": [1, 5],
          "reference": {"model": "test_resnet", "strategy": "scratch"}}


def suite_file(tmp_path, **robustness) -> str:
    data = {**SMOKE, "name": "robust-smoke", "experiment": "robust-smoke",
            "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
            "models": [{"name": "test_resnet"}], "strategies": ["scratch", "frozen"],
            "seeds": [0, 1], "explain": {"methods": []}, "robustness": {**ROBUST, **robustness}}
    data["training"] = {**data["training"], "epochs": 1}
    data["preprocess"] = {**data["preprocess"], "image_size": 32}
    path = tmp_path / "robust-smoke.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("block, where", [
    ({"severities": [0]}, "robustness.severities[0]"),
    ({"artefacts": ["noise", "fog"]}, "robustness.artefacts[1]"),
    ({"severities": [1, 1]}, "robustness.severities"),
    ({"reference": {"model": "test_resnet", "strategy": "full"}}, "robustness.reference"),
])
def test_bad_values_exit_2_naming_the_yaml_path(tmp_path, capsys, block, where):
    assert main(["suite", suite_file(tmp_path, **block), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"robust-smoke.yaml: {where}" in err and "Traceback" not in err, err


def test_the_artefact_figure_from_the_console_script(tmp_path):
    script = shutil.which("mribench", path=os.path.dirname(sys.executable))
    assert script, "no `mribench` console script beside this Python"
    image = next((SAMPLE_DIR / "Testing" / "glioma").glob("*.jpg"))
    out = tmp_path / "grid.png"
    done = subprocess.run([script, "data", "artefacts", str(image), "--out", str(out), "--size",
                           "64", "--artefacts", "noise,spike", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    with Image.open(out) as png:  # two rows of clean + five severities
        assert png.width > 2 * png.height
    rows = json.loads(done.stdout)["rows"]
    assert [r["artefact"] for r in rows] == ["spike", "noise"]
    assert rows[1]["parameter"] == "std" and rows[1]["s1"] < rows[1]["s5"]
    bad = subprocess.run([script, "data", "artefacts", str(image), "--out", str(out),
                          "--artefacts", "fog"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--artefacts: unknown ['fog']" in bad.stderr


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, one_thread):
    """Two strategies x two seeds of a tiny model on the embedded sample, 2 artefacts x 2
    severities, then the report with --json."""
    tmp = tmp_path_factory.mktemp("robust")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mp.setenv("BENCHMARK_CACHE_DIR", str(tmp / "cache"))
    import torch

    from mribench.models import registry
    from mribench.models.archs import create_network

    torch.manual_seed(3)
    (tmp / "weights").mkdir()
    torch.save(create_network(registry.get("test_resnet")).state_dict(),
               tmp / "weights" / "test_resnet.pth")
    mp.setenv("BENCHMARK_WEIGHTS_DIR", str(tmp / "weights"))
    path = suite_file(tmp)
    assert main(["suite", path]) == 0
    report = subprocess.run([sys.executable, "-m", "mribench", "report", path, "--json",
                             "--out", str(tmp / "report")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    mp.undo()
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("robust-smoke")
    cells = [r for r in client.search_runs([exp.experiment_id]) if "run_key" in r.data.tags]
    yield {"tmp": tmp, "report": report, "cells": cells, "client": client}


def test_every_cell_logs_the_graded_metrics_and_predictions(smoke_run):
    cells = smoke_run["cells"]
    assert len(cells) == 4
    for run in cells:
        m = run.data.metrics
        for prefix in ("robust", "robust_clean"):
            for artefact in ("noise", "blur"):
                for k in (1, 5):
                    for metric in ("accuracy", "balanced_accuracy", "ece"):
                        assert 0 <= m[f"{prefix}_{artefact}_s{k}_{metric}"] <= 1
                assert m[f"{prefix}_{artefact}_accuracy"] == pytest.approx(
                    (m[f"{prefix}_{artefact}_s1_accuracy"] + m[f"{prefix}_{artefact}_s5_accuracy"]) / 2)
            assert m[f"{prefix}_mca"] == pytest.approx(
                (m[f"{prefix}_noise_accuracy"] + m[f"{prefix}_blur_accuracy"]) / 2)
        assert m["robust_relative_drop"] == pytest.approx(1 - m["robust_mca"] / m["test_accuracy"])
    frozen = next(r for r in cells if r.data.tags["strategy"] == "frozen")
    client = smoke_run["client"]
    robust = pd.read_csv(client.download_artifacts(frozen.info.run_id, "robustness/predictions.csv",
                                                   str(smoke_run["tmp"])))
    clean = pd.read_csv(client.download_artifacts(frozen.info.run_id, "metrics/predictions.csv",
                                                  str(smoke_run["tmp"])))
    assert len(robust) == 4 * len(clean)  # 2 artefacts x 2 severities, every test image
    assert list(robust.columns[:3]) == ["artefact", "severity", "file"]
    # the frozen (feature-reuse) path ran the backbone on the corrupted images: its
    # probabilities under heavy blur are not the clean ones
    blurred = robust[(robust["artefact"] == "blur") & (robust["severity"] == 5)]
    probs = [c for c in clean.columns if c.startswith("prob_")]
    assert (blurred[probs].to_numpy() - clean[probs].to_numpy()).__abs__().max() > 1e-4


def test_the_report_shows_heat_map_curves_mca_and_paired_tests(smoke_run):
    done = smoke_run["report"]
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert all(r["robust_clean_mca_ci95"][0] <= r["robust_clean_mca"] <= r["robust_clean_mca_ci95"][1]
               for r in out["rows"])
    table = {r["config"]: r for r in out["robustness"]["table"]}
    assert table["scratch"]["mce"] == pytest.approx(1.0)  # the reference against itself
    assert {(p["artefact"], p["severity"]) for p in out["robustness"]["pairs"]} == {
        ("noise", 1), ("noise", 5), ("blur", 1), ("blur", 5)}
    assert all(p["covers"] == "test images and training seeds" for p in out["robustness"]["pairs"])
    folder = smoke_run["tmp"] / "report"
    for name in ("robustness_heatmap.png", "robustness_severity.png", "robustness.csv",
                 "robustness_curves.csv", "robustness_pairwise.csv"):
        assert (folder / name).is_file(), name
    curves = pd.read_csv(folder / "robustness_curves.csv")
    assert sorted(curves["severity"].unique()) == [0, 1, 5]
    page = (folder / "report.md").read_text()
    assert "Robustness to MRI artefacts" in page and "clean mCA [95% CI]" in page
