"""Paired comparisons between configurations: pairing by seed/fold, McNemar, Holm correction."""
from __future__ import annotations

import pandas as pd
import pytest

from mribench.compare import holm, paired_rows


def test_holm_matches_hand_computation():
    # sorted p: 0.01*3=0.03, 0.02*2=0.04, 0.04*1=0.04 (monotone) -> back in input order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def runs_table():
    rows = []
    for config, model in (("A", "good"), ("B", "bad")):
        for seed in ("0", "1"):
            rows.append({"run_id": f"{config}{seed}", "status": "FINISHED",
                         "tags.dataset": "d", "tags.config_key": config, "tags.model": model,
                         "tags.strategy": "full", "tags.seed": seed, "tags.fold": "-"})
    rows.append({**rows[-1], "run_id": "B2", "tags.seed": "2"})  # no partner in A: ignored
    return pd.DataFrame(rows)


def predictions(run_id: str) -> pd.DataFrame:
    true = [0, 1] * 20
    # the good model is always right; the bad one misses every 4th image
    pred = true if run_id.startswith("A") else [t if i % 4 else 1 - t for i, t in enumerate(true)]
    return pd.DataFrame({"file": [f"img{i}.jpg" for i in range(40)], "true": true, "pred": pred})


def test_pairs_are_pooled_over_shared_seeds_only():
    (row,) = paired_rows(runs_table(), predictions)
    assert (row["a"], row["b"]) == ("good/full", "bad/full")
    assert row["repeats"] == 2 and row["images"] == 80
    assert row["accuracy_a"] == 1.0 and row["accuracy_b"] == 0.75
    assert (row["a_only"], row["b_only"]) == (20, 0)
    assert row["p_value"] == pytest.approx(2 * 0.5 ** 20)  # exact binomial, two-sided
    assert row["p_holm"] == row["p_value"]  # a single comparison needs no correction


def test_runs_on_different_images_are_not_paired():
    def mismatched(run_id):
        frame = predictions(run_id)
        if run_id.startswith("B"):
            frame["file"] = "other_" + frame["file"]
        return frame

    (row,) = paired_rows(runs_table(), mismatched)  # reported, not fatal for other pairs
    assert "different images" in row["error"] and "p_value" not in row
