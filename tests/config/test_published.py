"""What a study suite says about its paper: declared deviations (required with published
figures), the protocol of each published figure, and published values that cannot be true."""
from __future__ import annotations

import pytest

from mribench.config.published import PublishedResult, flag_rows, value_flags
from mribench.config.schema import SUITES_DIR, SuiteError
from mribench.config.suite_file import load_suite, parse_suite
from mribench.report.summary import print_paper_notes, published_by_config

STUDIES = sorted(p.stem for p in SUITES_DIR.glob("study_*.yaml"))
SUITE = {"name": "p", "datasets": [{"name": "brain-mri-binary-253"}],
         "split": {"protocol": "holdout"}, "models": [{"name": "small_cnn", "label": "cnn"}],
         "strategies": ["scratch"],
         "published": [{"model": "cnn", "strategy": "scratch", "protocol": "holdout",
                        "values": {"test_accuracy": 0.8}}]}


def test_the_study_suites_are_there():
    # the five studies, and A and B with the papers' own (ungrouped) split, which leaks copies
    assert STUDIES == ["study_a", "study_a_paper_split", "study_b", "study_b_paper_split",
                       "study_c", "study_c_kfold", "study_d"]


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_suite_declares_its_deviations(name):
    suite = load_suite(name)
    assert suite.published and len(suite.deviations) >= 5
    for d in suite.deviations:
        assert d.topic and d.paper and d.ours and d.why and d.paper != d.ours


def test_published_figures_without_deviations_are_refused():
    with pytest.raises(SuiteError, match="deviations"):
        parse_suite({k: v for k, v in SUITE.items()})
    assert parse_suite({**SUITE, "deviations": []}).deviations == []  # declared: none


def test_a_kfold_figure_is_never_put_beside_a_holdout_suite():
    bad = {**SUITE, "deviations": [], "published": [{**SUITE["published"][0],
                                                     "protocol": "kfold"}]}
    with pytest.raises(SuiteError, match="published\\[0\\].*'kfold'.*not comparable"):
        parse_suite(bad)


def test_study_c_impossible_f1_values_are_flagged_and_left_out():
    suite = load_suite("study_c")
    flags = {(f["model"], f["flag"]) for f in flag_rows(suite.published)}
    assert {m for m, kind in flags if kind == "impossible"} == {"ResNet50", "2D-CNN",
                                                               "MobileNetV2"}
    published = published_by_config(suite)
    resnet, xception = published[("ResNet50", "frozen")], published[("Xception", "frozen")]
    assert "test_f1_yes" not in resnet and resnet["test_accuracy"] == 0.751
    assert xception["test_f1_yes"] == 0.9375  # consistent: compared


def test_rounded_values_are_not_flagged():
    # Study D's glioma .99 / .85 / .92: the harmonic mean 0.915 is within the rounding of .92
    ok = PublishedResult(model="m", strategy="s", protocol="official",
                         values={"test_precision_glioma": 0.99, "test_recall_glioma": 0.85,
                                 "test_f1_glioma": 0.92})
    assert value_flags(ok) == []
    flagged = {n: {(f["model"], f["strategy"], f["metric"])
                   for f in flag_rows(load_suite(n).published)} for n in STUDIES if n != "study_c"}
    # Study B's ResNet50 method 2 glioma: P 98, R 84, F1 86 (their harmonic mean is 90.5)
    expected_b = {("ResNet50", "method2", "test_f1_glioma")}
    assert flagged == {n: (expected_b if n.startswith("study_b") else set()) for n in flagged}


def test_other_contradictions_are_flagged():
    bad = PublishedResult(model="m", strategy="s", protocol="holdout",
                          values={"test_accuracy": 1.2, "test_last_epoch_accuracy": 0.9,
                                  "test_best_epoch_accuracy_peeking": 0.8})
    kinds = {f["metric"]: f["flag"] for f in value_flags(bad)}
    assert kinds == {"test_accuracy": "impossible",
                     "test_best_epoch_accuracy_peeking": "inconsistent"}


def test_the_report_prints_deviations_and_flags(capsys):
    print_paper_notes(load_suite("study_c"))
    out = capsys.readouterr().out
    assert "deviations from the paper" in out and "offline augmentation" in out
    assert "flagged (not compared)" in out and "impossible" in out
