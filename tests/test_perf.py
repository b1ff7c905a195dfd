"""`mribench perf` measures every stage in one run and prints the ratios as JSON."""
from __future__ import annotations

import json
import math

from mribench.cli import main
from real_data import mri_7023


def test_perf_reports_every_measurement_with_ratios(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    dataset, folder = mri_7023()  # the full 7023 set when here, else the shipped sample
    assert main(["perf", "--dataset", dataset, "--data-dir", str(folder.parent), "--per-class",
                 "4", "--image-size", "64", "--batch-size", "8", "--device", "cpu",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["measurement"]: r for r in out["rows"]}
    assert set(rows) == {"loader only (cached, augmented)", "full: synthetic input",
                         "full: pipeline epoch", "frozen: epoch recomputing backbone",
                         "frozen: one-time feature extraction",
                         "frozen: epoch on reused features"}
    assert all(r["images_per_s"] > 0 for r in rows.values())
    for name, key in (("full: pipeline epoch", "vs_synthetic"),
                      ("frozen: epoch on reused features", "vs_full_epoch")):
        assert math.isfinite(rows[name][key]) and rows[name][key] > 0
    assert out["model"] == "efficientnet_lite0" and out["device"] == "cpu"
