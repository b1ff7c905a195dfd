"""A two-size suite through the installed `mribench` from a folder outside the repository: the
dry run counts the axis, the run labels cells by it, and the report draws the curve (HTML page,
files, --json); a bad axis path exits 2 naming it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SUITE = {
    "name": "two-sizes", "experiment": "two-sizes",
    "datasets": [{"name": "brain-tumor-mri-7023-sample"}],  # shipped: no data folder needed
    "split": {"protocol": "official", "val_fraction": 0.25},
    "preprocess": {"image_size": 32},
    "training": {"epochs": 1, "batch_size": 8},
    "models": [{"name": "test_resnet"}],
    "strategies": ["scratch"],
    "seeds": [0, 1],
    "axes": {"datasets[*].train_per_class": [2, "all"]},
}


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("axes")
    assert not tmp.resolve().is_relative_to(ROOT)
    script = shutil.which("mribench", path=os.path.dirname(sys.executable))
    assert script, "no `mribench` console script beside this Python: install the package first"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENCHMARK_"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "MPLBACKEND": "Agg",
            "BENCHMARK_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    (tmp / "two.yaml").write_text(yaml.safe_dump(SUITE))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, *args], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=600)

    return {"tmp": tmp, "run": run, "dry": run("suite", "two.yaml", "--dry-run", "--json"),
            "suite": run("suite", "two.yaml"),
            "report": run("report", "two.yaml", "--json", "--out", "rep")}


def test_dry_run_counts_the_axis(outside):
    dry = outside["dry"]
    assert dry.returncode == 0, dry.stderr[-2000:]
    out = json.loads(dry.stdout)
    assert out["title"] == "two-sizes: 4 cells (dry run; axes: train_per_class 2)"
    assert sorted(r["axes"] for r in out["rows"]) == ["train_per_class=2"] * 2 + [
        "train_per_class=all"] * 2
    assert len({r["run_key"] for r in out["rows"]}) == 4


def test_console_labels_cells_by_axis_value(outside):
    done = outside["suite"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train_per_class=2" in done.stdout and "train_per_class=all" in done.stdout


def test_report_draws_the_curve(outside):
    rep = outside["report"]
    assert rep.returncode == 0, rep.stderr[-3000:]
    out = json.loads(rep.stdout)
    curve = out["curves"]
    assert [(p["value"], p["runs"]) for p in curve] == [("2", 2), ("all", 2)]
    # `all` sits at the training images per class it used: the sample's 8 minus the val carve
    assert curve[1]["x"] == 6 and all(p["ci95_low"] <= p["accuracy"] <= p["ci95_high"]
                                      for p in curve)
    assert curve[0]["covers"] == "test images and seeds"
    folder = outside["tmp"] / "rep"
    page = (folder / "index.html").read_text()
    section = page[page.index("Curve: accuracy against train_per_class"):]
    section = section[:section.find("<h2", 10)]
    assert re.search(r"<img [^>]*src=['\"]data:image/png;base64,", section), section[:500]
    assert "scratch" in section and "all (6 per class)" in section
    assert (folder / "curve_train_per_class.png").is_file()
    rows = (folder / "curve_train_per_class.csv").read_text().splitlines()
    assert rows[0].startswith("dataset,axis,line,value,x") and len(rows) == 3


def test_bad_axis_path_exits_2_naming_it(outside):
    bad = {**SUITE, "axes": {"training.lrr": [0.1]}}
    (outside["tmp"] / "bad.yaml").write_text(yaml.safe_dump(bad))
    done = outside["run"]("suite", "bad.yaml", "--dry-run")
    assert done.returncode == 2
    assert "axes.training.lrr[0] = 0.1: training.lrr: unknown key; did you mean 'lr'?" in done.stderr
    assert "Traceback" not in done.stderr
