"""All three real datasets run through the suite with every split protocol they support."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from mribench import tracking
from mribench.config.suite_file import load_suite
from mribench.data import DataError
from mribench.run.suite import SuiteOptions, run_suite
from real_data import needs_real

ALL = ["brain-tumor-mri-7023", "brain-tumor-classification-3264", "brain-mri-binary-253"]
pytestmark = needs_real(*ALL)
CASES = {
    "official": (ALL[:2], {"val_fraction": 0.25}),
    "holdout": (ALL, {"test_fraction": 0.25, "val_fraction": 0.25}),
    "kfold": (ALL[2:], {"folds": 2, "val_fraction": 0.25}),
}


@pytest.mark.parametrize("protocol", CASES)
def test_protocol_runs_on_real_sets(protocol, mlflow_store, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    names, split = CASES[protocol]
    suite = load_suite("smoke", {
        "experiment": f"sets-{protocol}", "training.epochs": 1, "explain.methods": [],
        "preprocess.image_size": 32, "models": [{"name": "test_resnet"}],
        "split": {"protocol": protocol, **split},
        "datasets": [{"name": n, "subset_per_class": 8} for n in names]})
    assert run_suite(suite, SuiteOptions(data_dir=str(data_dir))) == 0
    runs = MlflowClient().search_runs([tracking.setup(f"sets-{protocol}")], "tags.role = 'cell'")
    expected = len(names) * (2 if protocol == "kfold" else 1)
    assert len(runs) == expected and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        classes = run.data.params["classes"]
        assert ("yes" in classes) == (run.data.tags["dataset"] == "brain-mri-binary-253")
        assert "notumor" in classes or "yes" in classes  # canonical names, not folder names


def test_official_split_of_a_set_without_one_stops_before_training(mlflow_store, data_dir):
    suite = load_suite("smoke", {"datasets": [{"name": "brain-mri-binary-253"}]})
    with pytest.raises(DataError, match="no official train/test split"):
        run_suite(suite, SuiteOptions(data_dir=str(data_dir)))
