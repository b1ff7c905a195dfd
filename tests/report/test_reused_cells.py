"""A suite that reuses another suite's finished cells (same run_key, e.g. `batchnorm_stats`
reusing `transfer_methods`' `adapt` cells) reports them as its own cells: with its axis values,
so they are not pooled with, or told apart from, the wrong configurations."""
from __future__ import annotations

import pandas as pd

from mribench.config.suite_file import parse_suite
from mribench.matrix import expand
from mribench.report.summary import current_runs

BASE = {"name": "reuse", "datasets": [{"name": "brain-mri-binary-253"}],
        "models": [{"name": "test_resnet"}], "strategies": ["bitfit"], "seeds": [0]}


def test_a_reused_cell_gets_this_suite_s_labels_and_an_older_run_keeps_its_own():
    first = expand(parse_suite({**BASE, "axes": {"datasets[*].train_per_class": [10]}}))
    ours = parse_suite({**BASE, "axes": {"datasets[*].train_per_class": [10],
                                         "strategies[*].batchnorm": ["adapt", "pretrained"]}})
    (trained_by_first,) = first
    runs = pd.DataFrame([
        # the first suite's run of the cell both suites share: its tags say nothing of batchnorm
        {"run_id": "a", "run_key": trained_by_first.run_key, "status": "FINISHED",
         "start_time": 1, "model": "test_resnet", "strategy": "bitfit",
         "axes": "train_per_class=10", "axis.train_per_class": "10"},
        # a run of an older version of the suite (only with --all)
        {"run_id": "b", "run_key": "0123456789abcdef", "status": "FINISHED", "start_time": 2,
         "model": "test_resnet", "strategy": "bitfit", "axes": "old", "axis.train_per_class": "5"},
    ])
    labelled = current_runs(runs, ours, include_all=True).set_index("run_id")
    assert trained_by_first.run_key in {c.run_key for c in expand(ours)}
    assert labelled.loc["a", "axes"] == "train_per_class=10, batchnorm=adapt"
    assert labelled.loc["a", "axis.batchnorm"] == "adapt"
    assert labelled.loc["b", "axes"] == "old" and labelled.loc["b", "axis.train_per_class"] == "5"
    assert pd.isna(labelled.loc["b", "axis.batchnorm"])
    assert list(current_runs(runs, ours, include_all=False)["run_id"]) == ["a"]
