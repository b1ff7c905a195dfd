"""Paired comparisons between configurations: pairing by seed/fold, the test each design gets,
clean and full subsets, Holm over pairs."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mribench.stats import paired
from mribench.stats.compare import paired_rows


def runs_table(protocol: str = "official", folds=("-",)):
    rows = []
    for config, model in (("A", "good"), ("B", "bad")):
        for seed in ("0", "1"):
            for fold in folds:
                rows.append({"run_id": f"{config}{seed}{fold}", "status": "FINISHED",
                             "dataset": "d", "config_key": config, "model": model,
                             "strategy": "full", "seed": seed, "fold": fold,
                             "split.protocol": protocol, "n_train": "80",
                             "n_val": "20"})
    rows.append({**rows[-1], "run_id": "B2", "seed": "2"})  # no partner in A: ignored
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
    # two seeds: the configuration-level test. Both seeds of each configuration agree on every
    # image, so the seed terms are 0 and it is the t over images of d = -1 (10 images), 0 (30)
    assert full["covers"] == "test images and training seeds" and full["seeds"] == 2
    se = math.sqrt((10 * 0.75 ** 2 + 30 * 0.25 ** 2) / 39 / 40)
    assert full["p_value"] == pytest.approx(2 * sps.t.sf(0.25 / se, 39))
    assert full["difference"] == pytest.approx(-0.25)
    assert full["ci95"] == pytest.approx([-0.25 - sps.t.ppf(0.975, 39) * se,
                                          -0.25 + sps.t.ppf(0.975, 39) * se])
    assert full["detectable"] > 0
    assert clean["images"] == 30 and clean["discordant"] == 7
    m = 7 / 30
    se = math.sqrt((7 * (1 - m) ** 2 + 23 * m ** 2) / 29 / 30)
    assert clean["p_value"] == pytest.approx(2 * sps.t.sf(m / se, 29))
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
    # two seeds of the same two folds: the folds are averaged within each seed first
    expected = paired.nadeau_bengio_by_seed([diffs[:2], diffs[2:]], n_train=100, n_test=40)
    assert full["test"] == "corrected resampled t, folds averaged within each seed"
    assert full["covers"].startswith("test images and training")
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


def test_one_seed_is_labelled_as_a_statement_about_the_trained_models():
    runs = runs_table()
    one = runs[runs["seed"] == runs["seed"].iloc[0]]
    full = {r["subset"]: r for r in paired_rows(one, predictions)}["full"]
    assert full["covers"] == "test images only (1 seed)"
    assert "these trained models only" in full["test"]
    assert full["p_value"] == pytest.approx(2 * 0.5 ** 10)  # exact: 10 images, all one way


def test_nadeau_bengio_by_seed_holds_its_level_when_a_seed_shifts_all_its_folds():
    # 3 seeds x 5 folds, equal configurations; each seed shifts all its folds' differences
    # alike (SD 0.05), folds vary little around that (SD 0.01): a null with a shared seed
    # effect (measured: 0.062 by seed, 0.186 over the 15 folds as independent repeats)
    rng = np.random.default_rng(5)
    draws, rejected_by_seed, rejected_pooled = 2000, 0, 0
    for _ in range(draws):
        d = rng.normal(0, 0.05, (3, 1)) + rng.normal(0, 0.01, (3, 5))
        rejected_by_seed += paired.nadeau_bengio_by_seed(d.tolist(), 1000, 250)["p_value"] < 0.05
        rejected_pooled += paired.nadeau_bengio(d.ravel().tolist(), 1000, 250)["p_value"] < 0.05
    assert rejected_by_seed / draws <= 0.075  # 2000 draws: SE of a 5% rate is 0.5 points
    assert rejected_pooled / draws > 0.10  # what averaging within a seed first fixes
