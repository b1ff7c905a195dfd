"""`mribench perf`: every measurement in interleaved rounds, each ratio as median and spread."""
from __future__ import annotations

import json
import math

import pytest

from mribench.cli.main import main
from mribench.train.perf import RATIOS
from real_data import mri_7023


def test_perf_reports_every_measurement_and_ratio_over_rounds(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    dataset, folder = mri_7023()  # the full 7023 set when here, else the shipped sample
    assert main(["perf", "--dataset", dataset, "--data-dir", str(folder.parent), "--per-class",
                 "2", "--image-size", "32", "--batch-size", "4", "--device", "cpu",
                 "--repeats", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    measured = {r["measurement"]: r for r in out["measurements"]}
    assert set(measured) == {"loader", "synthetic fp32", "synthetic fast", "pipeline fp32",
                             "pipeline fast", "frozen recompute", "frozen extraction",
                             "frozen reuse"}
    assert all(0 < r["min"] <= r["images_per_s"] <= r["max"] for r in measured.values())
    ratios = {r["ratio"]: r for r in out["rows"]}
    assert set(ratios) == set(RATIOS)
    for r in ratios.values():
        assert len(r["per_round"]) == 2 and all(math.isfinite(v) and v > 0 for v in r["per_round"])
        assert r["min"] <= r["median"] <= r["max"]
    assert out["repeats"] == 2 and out["device"] == "cpu" and out["fast_precision"] == "bf16"
    assert out["model"] == "efficientnet_lite0"


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_repeats_must_be_positive(bad, capsys):
    with pytest.raises(SystemExit) as err:
        main(["perf", "--repeats", bad])
    assert err.value.code == 2 and "--repeats" in capsys.readouterr().err


def test_concurrent_mode_compares_shared_cores_with_one_process(tmp_path, monkeypatch, capsys,
                                                               weights_dir):
    """`perf --concurrent 2`: one process with every core, two with their share, two with every
    core each; each throughput from real epochs, each ratio per round."""
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    dataset, folder = mri_7023()
    assert main(["perf", "--concurrent", "2", "--model", "test_resnet", "--dataset", dataset,
                 "--data-dir", str(folder.parent), "--per-class", "2", "--image-size", "32",
                 "--batch-size", "4", "--repeats", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["measurement"]: r for r in out["measurements"]}
    assert set(rows) == {"alone", "shared", "shared, default threads"}
    cores = out["cores"]
    assert rows["alone"]["threads_each"] == cores and rows["alone"]["processes"] == 1
    assert rows["shared"]["threads_each"] == max(1, cores // 2)
    assert rows["shared"]["processes"] == 2
    assert all(0 < r["min"] <= r["images_per_s"] <= r["max"] for r in rows.values())
    ratios = {r["ratio"]: r for r in out["rows"]}
    assert set(ratios) == {"shared vs alone", "shared, default threads vs alone"}
    assert all(len(r["per_round"]) == 2 for r in ratios.values())
    assert len(out["load_average_before"]) == 3
