"""A scored subset says what it holds, through the installed `mribench` from outside the repo.

A synthetic three-class set whose every test image of class b is a copy of a training image:
its clean test has no b. Two test images of class a are copies of each other: one group.
The run and its report must give b's recall and F1 as n/a (not 0), macro averages over a and c,
the class mix, the baselines and "N images in G groups" in the console, the JSON and the page.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _slice(seed: int, size: int = 32) -> Image.Image:
    """A distinct synthetic 'slice': a bright blob on black, position and size from the seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.integers(6, size - 6, 2).tolist() + [int(rng.integers(3, 9))]
    arr = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, 200, 0) + rng.integers(0, 40, (size, size))
    return Image.fromarray(arr.astype(np.uint8))


def _write_set(root: Path) -> None:
    seed = 0
    for rel, n in {"train/a": 8, "train/b": 8, "train/c": 8, "test/a": 4, "test/c": 4}.items():
        (root / rel).mkdir(parents=True)
        for i in range(n):
            _slice(seed).save(root / rel / f"img{i:02d}.png")
            seed += 1
    (root / "test/b").mkdir()
    for i in range(3):  # every test b image is a training b image: none is clean
        shutil.copy(root / f"train/b/img{i:02d}.png", root / f"test/b/img{i:02d}.png")
    shutil.copy(root / "test/a/img00.png", root / "test/a/img01.png")  # a copy within test


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("mix")
    assert not tmp.resolve().is_relative_to(ROOT)
    _write_set(tmp / "set")
    script = shutil.which("mribench", path=os.path.dirname(sys.executable))
    assert script, "no `mribench` console script beside this Python: install the package first"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENCHMARK_"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "MPLBACKEND": "Agg",
            "BENCHMARK_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    suite = {"name": "mix", "experiment": "mix", "datasets": [
        {"name": "mine", "root": str(tmp / "set"), "dedup": "exact"}],
        "split": {"protocol": "official", "val_fraction": 0.25},
        "preprocess": {"image_size": 16, "channels": 3}, "training": {"epochs": 1, "batch_size": 8},
        "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0, 1],
        "explain": {"methods": []}}
    (tmp / "mix.yaml").write_text(yaml.safe_dump(suite))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, *args], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=600)

    ran = run("suite", "mix.yaml")
    return {"tmp": tmp, "env": env, "suite": ran,
            "json": run("report", "mix.yaml", "--json", "--out", "rep"),
            "console": run("report", "mix.yaml", "--compare", "--no-files")}


def test_the_run_says_the_mix_and_warns_of_the_missing_class(outside):
    ran = outside["suite"]
    assert ran.returncode == 0, ran.stderr[-3000:]
    said = ran.stdout + ran.stderr
    assert "test 11 images in 10 groups (a 4, b 3, c 4)" in said
    assert "clean test 8 images in 7 groups (a 4, b 0, c 4), majority baseline 0.500" in said
    assert re.search(r"warning: mine clean test: no image of b \(recall/F1 n/a", said)


def test_the_missing_class_is_not_logged_and_macro_averages_run_over_the_rest(outside):
    client = MlflowClient(outside["env"]["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("mix")
    runs = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
    assert len(runs) == 2
    for run in runs:
        m = run.data.metrics
        assert "test_clean_recall_b" not in m and "test_clean_f1_b" not in m
        assert m["test_clean_support_b"] == 0 and m["test_clean_macro_classes"] == 2
        assert m["test_clean_f1_macro"] == pytest.approx((m["test_clean_f1_a"] + m["test_clean_f1_c"]) / 2)
        assert m["test_macro_classes"] == 3 and "test_recall_b" in m
        assert m["test_clean_groups"] == 7 and m["test_groups"] == 10
        assert m["test_clean_majority_baseline"] == 0.5
        assert m["test_clean_chance_baseline"] == 0.5
        preds = pd.read_csv(client.download_artifacts(run.info.run_id, "metrics/predictions.csv"))
        group = dict(zip(preds["file"], preds["group"]))
        assert group["test/a/img01.png"] == group["test/a/img00.png"] == "test/a/img00.png"
        assert preds["group"].nunique() == 10
        report = json.loads(Path(client.download_artifacts(
            run.info.run_id, "metrics/classification_report_clean.json")).read_text())
        assert report["b"]["recall"] is None and report["macro avg"]["classes"] == 2
        mix = json.loads(Path(client.download_artifacts(
            run.info.run_id, "data/composition.json")).read_text())
        assert mix["test_clean"]["classes"] == {"a": 4, "b": 0, "c": 4}


def test_the_json_report_gives_null_for_the_missing_class(outside):
    done = outside["json"]
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    row = out["rows"][0]
    assert row["test_clean_classes"] == {"a": 4, "b": 0, "c": 4}
    assert row["test_clean_recall_b"] is None and row["test_recall_b"] is not None
    assert row["test_clean_majority_baseline"] == 0.5 and row["test_clean_macro_classes"] == 2
    assert row["test_clean_images"] == 8 and row["test_clean_groups"] == 7
    assert row["test_images"] == 11 and row["test_groups"] == 10
    clean = next(r for r in out["composition"] if r["subset"] == "clean")
    assert (clean["images"], clean["groups"], clean["n b"]) == (8, 7, 0)
    assert any("no image of b" in w for w in out["composition_warnings"])


def test_the_console_report_shows_mix_baselines_na_and_groups(outside):
    done = outside["console"]
    assert done.returncode == 0, done.stderr[-3000:]
    text = re.sub(r"\s+", " ", done.stdout)
    assert "b n/a" in text and "8 in 7 groups" in text and "0.500 / 0.500" in text
    assert "what each test subset holds" in text
    assert "no image of b" in done.stderr + done.stdout


def test_the_page_shows_mix_baselines_na_and_groups(outside):
    page = (outside["tmp"] / "rep" / "index.html").read_text()
    assert "What each test subset holds" in page and "no image of b" in page
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium; .ci/run installs it)")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--virtual-time-budget=5000", "--dump-dom",
                           (outside["tmp"] / "rep" / "index.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    # the page as the browser laid it out: the main table's row, the composition table
    dom = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", done.stdout))
    assert re.search(r"clean recall .*a \d\.\d{3}, b n/a, c \d\.\d{3}", dom), dom[:3000]
    assert "8 in 7 groups" in dom and "0.500 / 0.500" in dom
    assert re.search(r"mine clean 8 7 4 0 4 0\.5 0\.5", dom), dom[:3000]
