"""Shared fixtures: the real data folder and an isolated MLflow store per test."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from real_data import DATA_DIR, MRI_7023, ROOT, have, why_missing

# what a developer's checkout holds anyway: never blamed on the tests
_OURS = ("__pycache__", ".pytest_cache", ".egg-info", ".ci-venv", ".venv", ".ruff_cache")


def _untracked_and_ignored() -> set[str] | None:
    """Every untracked or ignored path of the checkout (`git status --ignored`), None outside
    a git checkout (an installed wheel's tests)."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all",
                               "--", ".", ":!.ci-venv", ":!.venv"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    paths = {line[3:] for line in done.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {p for p in paths if not any(part in p for part in _OURS)}


def pytest_sessionstart(session):
    session.config._files_before = _untracked_and_ignored()


def pytest_sessionfinish(session, exitstatus):
    """Tests write only under temporary folders: a file the run left in the checkout (an
    `mlruns/`, a `.cache/`, an `mlflow.db`) fails the session, named."""
    before = getattr(session.config, "_files_before", None)
    if before is None or hasattr(session.config, "workerinput"):  # xdist workers: the controller checks
        return
    after = _untracked_and_ignored() or set()
    left = sorted(after - before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = ("tests left files in the checkout (write them under tmp_path): "
                   + ", ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20 else ""))
        if reporter:
            reporter.ensure_newline()
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _work_in_a_temporary_folder(tmp_path_factory):
    """Every test runs in a temporary current folder, so whatever a command writes by default
    (./mlflow.db, ./mlruns, ./.cache/mribench, ./reports) never lands in the checkout."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def _mlflow_uri_left_as_found(monkeypatch):
    """The product points MLflow at its store process-wide (mlflow.set_tracking_uri); a test that
    runs a command in this process must not leave the next test reading that store."""
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)  # restored after the test


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
