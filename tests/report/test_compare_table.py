"""`report --compare` on a console: one line per pair, within 120 columns, tests in a legend."""
from __future__ import annotations

import io

from mribench.console import set_results_stream
from mribench.report.compare_table import compact_rows, print_pairs

PAIR = {"subset": "clean", "a": "lite0-128 / partial2", "b": "lite0-224 / frozen",
        "test": "seed-aware paired t-test on per-seed accuracy differences",
        "covers": "test images and seeds", "repeats": 3, "images": 816, "accuracy_a": 0.9583,
        "accuracy_b": 0.9041, "difference": 0.0542, "ci95": [0.0312, 0.0771],
        "p_value": 0.00086, "p_holm": 0.0043, "detectable": 0.021}


def test_each_pair_is_one_line_within_120_columns_with_a_legend():
    pairs = [PAIR, {**PAIR, "subset": "full", "test": "McNemar exact", "covers": "test images",
                    "repeats": 1, "p_value": 0.2, "p_holm": 0.4}]
    out = io.StringIO()
    set_results_stream(out)
    try:
        print_pairs(pairs, with_dataset=False)
    finally:
        set_results_stream(None)
    lines = out.getvalue().splitlines()
    table = [line for line in lines if line.startswith("│")]
    assert len(table) == 2  # one line per pair: no wrapped cells
    assert max(len(line) for line in lines if line.startswith(("│", "┃", "┏"))) <= 120
    assert "T1: seed-aware paired t-test on per-seed accuracy differences test images and " \
           "seeds" in lines
    assert any(line.startswith("T2: McNemar exact") for line in lines)
    assert "A: lite0-128 / partial2" in lines and "B: lite0-224 / frozen" in lines
    row = compact_rows(pairs, False)[0][0]
    assert row["a - b"] == "A - B"
    short = compact_rows([{**PAIR, "a": "full", "b": "frozen"}], False)[0][0]
    assert short["a - b"] == "full - frozen"  # names that fit are shown as they are
    assert row["difference [95% CI]"] == "+0.054 [+0.031, +0.077]"
    assert (row["p"], row["p_holm"], row["n"], row["test"]) == ("0.00086", "0.0043", "816x3", "T1")
