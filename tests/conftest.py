"""Shared fixtures: the real data folder and an isolated MLflow store per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BENCHMARK_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "brain-tumor-mri-7023").is_dir():
        pytest.fail(f"real data not found at {DATA_DIR}: set BENCHMARK_DATA_DIR")
    return DATA_DIR


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite tracking store for one test, so tests never see each other's runs."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine torch's spinning
    threads made the explanation tests several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
