"""Paired comparisons between configurations: pairing by seed/fold, the test each design gets,
clean and full subsets, Holm over pairs."""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from mribench import paired
from mribench.compare import paired_rows


def runs_table(protocol: str = "official", folds=("-",)):
    rows = []
    for config, model in (("A", "good"), ("B", "bad")):
        for seed in ("0", "1"):
            for fold in folds:
                rows.append({"run_id": f"{config}{seed}{fold}", "status": "FINISHED",
                             "tags.dataset": "d", "tags.config_key": config, "tags.model": model,
                             "tags.strategy": "full", "tags.seed": seed, "tags.fold": fold,
                             "params.split.protocol": protocol, "params.n_train": "80",
                             "params.n_val": "20"})
    rows.append({**rows[-1], "run_id": "B2", "tags.seed": "2"})  # no partner in A: ignored
    return pd.DataFrame(rows)


def predictions(run_id: str) -> pd.DataFrame:
    true = [0, 1] * 20
    # the good model is always right; the bad one misses every 4th image (the same ones in
    # every seed), and images 0-9 are leaked copies (not clean)
    pred = true if run_id.startswith("A") else [t if i % 4 else 1 - t for i, t in enumerate(true)]
    return pd.DataFrame({"file": [f"img{i}.jpg" for i in range(40)], "true": true, "pred": pred,
                         "clean": [i >= 10 for i in range(40)]})


def test_official_split_averages_seeds_per_image_then_tests_over_images():
    rows = {r["subset"]: r for r in paired_rows(runs_table(), predictions)}
    full, clean = rows["full"], rows["clean"]
    assert (full["a"], full["b"]) == ("bad/full", "good/full")
    assert full["repeats"] == 2 and full["images"] == 40 and full["discordant"] == 10
    assert (full["accuracy_a"], full["accuracy_b"]) == (0.75, 1.0)
    # 10 images, each worse in both seeds: one sign pattern in 2^10 is as extreme, each way
    assert full["p_value"] == pytest.approx(2 * 0.5 ** 10)
    assert full["difference"] == pytest.approx(-0.25)
    assert full["ci95"][0] <= -0.25 <= full["ci95"][1] < 0
    assert clean["images"] == 30 and clean["discordant"] == 7
    assert clean["p_value"] == pytest.approx(2 * 0.5 ** 7)
    # Holm within each subset; a single pair needs no correction
    assert full["p_holm"] == full["p_value"] and clean["p_holm"] == clean["p_value"]


def test_kfold_uses_the_corrected_resampled_t_test():
    runs = runs_table("kfold", folds=("0", "1"))
    rows = {r["subset"]: r for r in paired_rows(runs, predictions_with_noise)}
    full = rows["full"]
    assert full["test"].startswith("corrected resampled t") and full["repeats"] == 4
    diffs = [predictions_with_noise(f"B{s}{f}").eval("true == pred").mean()
             - predictions_with_noise(f"A{s}{f}").eval("true == pred").mean()
             for s in "01" for f in "01"]
    expected = paired.nadeau_bengio(diffs, n_train=100, n_test=40)
    assert full["p_value"] == pytest.approx(expected["p_value"])
    assert full["ci95"] == pytest.approx([expected["ci95_low"], expected["ci95_high"]])


def predictions_with_noise(run_id: str) -> pd.DataFrame:
    frame = predictions(run_id)
    flip = np.random.default_rng(zlib.crc32(run_id.encode())).random(40) < 0.1
    frame.loc[flip, "pred"] = 1 - frame.loc[flip, "pred"]
    return frame


def test_runs_on_different_images_are_not_paired():
    def mismatched(run_id):
        frame = predictions(run_id)
        if run_id.startswith("B"):
            frame["file"] = "other_" + frame["file"]
        return frame

    rows = paired_rows(runs_table(), mismatched)  # reported, not fatal for other pairs
    assert rows and all("different images" in r["error"] and "p_value" not in r for r in rows)


def test_runs_without_clean_flags_are_compared_on_the_full_test_only():
    rows = paired_rows(runs_table(), lambda run_id: predictions(run_id).drop(columns="clean"))
    assert [r["subset"] for r in rows] == ["full"]
