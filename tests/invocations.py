"""Helpers for tests that start real `python -m mribench` invocations against one store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "concurrency-test"


def tiny_suite(tmp_path: Path, seeds: list[int], epochs: int = 1) -> Path:
    data = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
    data.update(name="tiny", experiment=EXPERIMENT, seeds=seeds, models=[{"name": "test_resnet"}],
                explain={"methods": []})
    data["training"]["epochs"] = epochs
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def env_for(tmp_path: Path, data_dir: Path) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**clean, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "BENCHMARK_DATA_DIR": str(data_dir), "BENCHMARK_CACHE_DIR": str(tmp_path / "cache"),
            "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "benchmark")}


def start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mribench", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def runs_of(env: dict) -> list:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id]) if exp else []
