"""Report helpers: the suite's published numbers sit beside ours; bad references fail early."""
from __future__ import annotations

import pytest

from mribench.config import SuiteError, parse_suite
from mribench.report import _with_published

SUITE = {
    "name": "r", "datasets": [{"name": "brain-mri-binary-253"}],
    "models": [{"name": "test_resnet", "label": "paper_cnn"}, {"name": "test_efficientnet"}],
    "strategies": [{"name": "frozen", "label": "tf1"}, "full"],
    "split": {"protocol": "holdout"},
    "published": [{"model": "paper_cnn", "strategy": "tf1", "protocol": "holdout",
                   "values": {"test_accuracy": 0.9}}],
    "deviations": [],
}


def test_published_numbers_join_the_matching_row():
    rows = [{"model": "paper_cnn", "strategy": "tf1", "test_accuracy": 0.8},
            {"model": "paper_cnn", "strategy": "full", "test_accuracy": 0.7},
            {"model": "test_efficientnet", "strategy": "tf1", "test_accuracy": 0.6}]
    assert _with_published(rows, parse_suite(SUITE)) == ["published_test_accuracy"]
    assert [r.get("published_test_accuracy") for r in rows] == [0.9, None, None]


def test_published_entry_must_name_a_declared_cell():
    bad = {**SUITE, "published": [{"model": "vgg", "strategy": "tf1", "protocol": "holdout",
                                   "values": {"test_accuracy": 0.9}}]}
    with pytest.raises(SuiteError, match="published\\[0\\]"):
        parse_suite(bad)
