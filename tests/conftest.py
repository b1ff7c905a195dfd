"""Shared fixtures: the real data folder and an isolated MLflow store per test."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from real_data import DATA_DIR, MRI_7023, have, why_missing


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding the real sets; tests that take it skip (saying why) without it."""
    if not have(MRI_7023):
        pytest.skip(why_missing(MRI_7023))
    return DATA_DIR


@pytest.fixture(scope="session")
def smoke_data_dir(tmp_path_factory) -> Path:
    """A data folder for the smoke suite: the real one when it holds the 7023 set, else an
    empty folder, so the suite falls back to the sample shipped with the package."""
    return DATA_DIR if have(MRI_7023) else tmp_path_factory.mktemp("no-data")


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


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """ImageNet-style weights for the tiny test model (the hub is unreachable offline)."""
    from mribench.models import registry
    from mribench.models.archs import create_network

    torch.manual_seed(3)
    path = tmp_path / "weights" / "test_resnet.pth"
    path.parent.mkdir()
    torch.save(create_network(registry.get("test_resnet")).state_dict(), path)
    monkeypatch.setenv("BENCHMARK_WEIGHTS_DIR", str(path.parent))
    return path
