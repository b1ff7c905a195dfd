"""The sample of the 7023 set shipped with the package, and the smoke suite's fallback to it:
used only by a dataset that names it as its fallback, only when the full set is missing, and
always said on the console and in MLflow."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from mribench.config.schema import SuiteError
from mribench.config.suite_file import load_suite
from mribench.data import DataError, fallback
from mribench.data.registry import KNOWN, SAMPLE_DIR, count_files
from mribench.matrix import expand
from mribench.run.suite import SuiteOptions, run_suite
from real_data import DATA_DIR, MRI_7023, ROOT, SAMPLE, needs_real

# one tiny real cell: the smoke suite cut to one model, one epoch, no explanations
TINY = {"models": [{"name": "test_resnet"}], "training.epochs": 1, "explain.methods": []}


def test_sample_is_small_complete_and_documented():
    files = [p for p in SAMPLE_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 1_000_000
    spec = KNOWN[SAMPLE]
    assert count_files(spec, SAMPLE_DIR) == spec.expected == {"Training": 32, "Testing": 32}
    for split in spec.splits:
        for cls in spec.class_map:
            images = sorted((SAMPLE_DIR / split / cls).glob("*.jpg"))
            assert len(images) == 8, (split, cls)
            assert {Image.open(p).size for p in images} == {(64, 64)}
    readme = (SAMPLE_DIR / "README.md").read_text()
    for fact in ("CC0-1.0", "masoudnickparvar/brain-tumor-mri-dataset", "tools/make_sample.py"):
        assert fact in readme


@needs_real(MRI_7023)
def test_script_remakes_the_sample_from_the_full_set(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "benchmark"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "tools/make_sample.py", str(DATA_DIR / MRI_7023),
                          "--dest", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jpg"))
    assert made == sorted(p.relative_to(SAMPLE_DIR) for p in SAMPLE_DIR.rglob("*.jpg"))
    for rel in made:  # same pixels up to JPEG encoder differences between Pillow builds
        a = np.asarray(Image.open(tmp_path / rel), dtype=np.int16)
        b = np.asarray(Image.open(SAMPLE_DIR / rel), dtype=np.int16)
        assert np.abs(a - b).mean() < 2, rel


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> Path:
    """No data folder configured at all: no BENCHMARK_DATA_DIR, no ./data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCHMARK_DATA_DIR", raising=False)
    return tmp_path


def test_smoke_falls_back_to_the_sample_when_the_full_set_is_missing(no_data, capsys):
    suite = load_suite("smoke")
    resolved, subs = fallback.substitute(suite, None)
    assert [d.name for d in resolved.datasets] == [SAMPLE]
    assert [(s.wanted, s.used) for s in subs] == [(MRI_7023, SAMPLE)]
    assert str(no_data / "data" / MRI_7023) in subs[0].reason  # where it looked
    # a cell of the sample never passes for (or skips) a cell of the full set
    assert {c.run_key for c in expand(resolved)}.isdisjoint(c.run_key for c in expand(suite))
    assert fallback.announce(subs) == {f"data_fallback.{MRI_7023}": SAMPLE}
    assert f"{MRI_7023} not found; using its fallback {SAMPLE}" in " ".join(
        capsys.readouterr().err.split())


def test_smoke_uses_the_full_set_when_found_with_unchanged_cell_identity(no_data):
    (no_data / "data" / MRI_7023).mkdir(parents=True)  # ./data, the default place
    resolved, subs = fallback.substitute(load_suite("smoke"), None)
    assert subs == [] and [d.name for d in resolved.datasets] == [MRI_7023]
    # the fallback key is not part of a cell's identity: runs from before it still count
    plain = load_suite("smoke", {"datasets": [{"name": MRI_7023, "subset_per_class": 6}]})
    assert [c.run_key for c in expand(resolved)] == [c.run_key for c in expand(plain)]


def test_a_dataset_without_fallback_is_never_replaced(no_data, mlflow_store):
    suite = load_suite("smoke", {"datasets": [{"name": MRI_7023, "subset_per_class": 6}]})
    assert fallback.substitute(suite, None) == (suite, [])
    with pytest.raises(DataError, match=f"dataset '{MRI_7023}' not found"):
        run_suite(suite, SuiteOptions(device="cpu"))


def test_fallback_must_name_another_registered_dataset():
    with pytest.raises(SuiteError, match=r"datasets\[0\].*fallback 'nope'"):
        load_suite("smoke", {"datasets": [{"name": MRI_7023, "fallback": "nope"}]})


def console_script() -> str:
    path = shutil.which("mribench", path=os.path.dirname(sys.executable))
    assert path, "no `mribench` console script beside this Python: install the package first"
    return path


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> dict:
    """The installed console script, run from a folder outside the repository with no data
    folder configured at all: a dry run, then one tiny real cell into a temporary store."""
    tmp = tmp_path_factory.mktemp("bare")
    assert not tmp.resolve().is_relative_to(ROOT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENCHMARK_"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "MPLBACKEND": "Agg",
            "BENCHMARK_CACHE_DIR": str(tmp / "cache")}
    tiny = ["--set", "models=[{name: test_resnet}]", "--set", "training.epochs=1",
            "--set", "explain.methods=[]"]  # TINY on the command line

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([console_script(), *args], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=600)

    out = {"help": run("--help"), "dry": run("suite", "smoke", "--dry-run", "--json", *tiny),
           "real": run("suite", "smoke", "--json", *tiny)}
    # report reads the same suite (smoke with TINY) from a file: a path works as a suite name
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(load_suite("smoke", TINY).model_dump(
        mode="json", exclude_none=True)))
    out["report"] = run("report", "tiny.yaml", "--json")
    return {**out, "uri": env["MLFLOW_TRACKING_URI"]}


def test_installed_script_answers_help(bare):
    assert bare["help"].returncode == 0 and "suite" in bare["help"].stdout


def test_installed_script_dry_run_shows_the_sample(bare):
    dry = bare["dry"]
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert {r["dataset"] for r in json.loads(dry.stdout)["rows"]} == {SAMPLE}
    assert "using its fallback" in dry.stderr


def test_smoke_with_no_data_folder_runs_on_the_sample_and_logs_it(bare):
    real = bare["real"]
    assert real.returncode == 0, real.stderr[-4000:]
    assert f"{MRI_7023} not found; using its fallback {SAMPLE}" in " ".join(real.stderr.split())
    result = json.loads(real.stdout)
    assert [r["status"] for r in result["rows"]] == ["FINISHED"]
    client = MlflowClient(bare["uri"])
    parent = client.get_run(result["parent_run_id"])
    assert parent.data.params[f"data_fallback.{MRI_7023}"] == SAMPLE
    assert parent.data.tags[f"data_fallback.{MRI_7023}"] == SAMPLE
    (cell,) = client.search_runs([parent.info.experiment_id], "tags.role = 'cell'")
    assert cell.info.status == "FINISHED"
    assert cell.data.tags["dataset"] == cell.data.params["dataset.name"] == SAMPLE
    named, with_sample = fallback.alternatives(load_suite("smoke", TINY))
    assert cell.data.tags["run_key"] != expand(named)[0].run_key
    assert cell.data.tags["run_key"] == expand(with_sample)[0].run_key
    assert 0 <= cell.data.metrics["test_accuracy"] <= 1


def test_report_counts_the_cells_run_on_the_fallback(bare):
    report = bare["report"]
    assert report.returncode == 0, report.stderr[-3000:]
    (row,) = json.loads(report.stdout)["rows"]
    assert (row["dataset"], row["model"], row["n"]) == (SAMPLE, "test_resnet", 1)
