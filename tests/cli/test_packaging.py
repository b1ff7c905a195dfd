"""What a regular install gets (the wheel's file list) and what `mlflow run` builds
(python_env.yaml, MLproject)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import tomllib
import yaml
from packaging.requirements import Requirement

from mribench.data.registry import SAMPLE_DIR
from real_data import ROOT

PINNED = {"torch": "torch==2.14.1", "torchvision": "torchvision==0.29.1"}


def test_wheel_ships_the_package_the_suites_and_the_sample(tmp_path):
    # built from a copy: setuptools writes build/ beside the sources it builds
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".ci-venv", ".device", "build", "dist", "site", "*.egg-info", "__pycache__",
        ".cache", "mlruns", "mlflow.db", ".pytest_cache", ".ruff_cache"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                          "--wheel-dir", str(tmp_path), str(source)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sample = {f"mribench/data/sample/{p.relative_to(SAMPLE_DIR).as_posix()}"
              for p in SAMPLE_DIR.rglob("*") if p.is_file()}
    assert len(sample) == 65 and sample <= names  # 64 images and their README
    suites = {f"mribench/suites/{p.name}" for p in (ROOT / "suites").glob("*.yaml")}
    assert "mribench/suites/smoke.yaml" in suites and suites <= names
    assert "mribench/suites/suite.schema.json" in names  # what their first line points at
    assert "mribench/cli/main.py" in names and "mribench/data/fallback.py" in names
    assert "mribench/py.typed" in names
    # one top-level package of our own name, nothing else (tests, tools, data stay out)
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"mribench"}


def test_mlflow_environment_lists_the_project_dependencies():
    """MLflow reuses an environment while python_env.yaml is unchanged, so the file must list
    every dependency itself (torch pinned) rather than install the project."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    wanted = [PINNED.get(Requirement(d).name, d) for d in project["dependencies"]]
    wanted += project["optional-dependencies"]["weights"]
    assert sorted(env["dependencies"]) == sorted(wanted)
    assert env["python"].startswith("3.11.")  # an exact release: pyenv needs no version list
    mlproject = yaml.safe_load((ROOT / "MLproject").read_text())
    assert mlproject["python_env"] == "python_env.yaml"
    for name, entry in mlproject["entry_points"].items():
        # the environment holds the dependencies; the code is the checkout's
        assert entry["command"].startswith("PYTHONPATH=benchmark python -m mribench "), name
