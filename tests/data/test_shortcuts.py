"""Shortcut audit (data/properties.py, data/shortcuts.py), provenance and the hold-out split.

A planted shortcut (one class saved at one size, the other at another, pixels drawn from the
same real MRI images) must be found; the same images with the sizes mixed over both classes
must not; properties are checked on hand-built files; a held-out source never reaches train or
val; the shipped sample is audited by the installed console script from outside the repository.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_sample import console_script

from mribench.config.schema import DatasetConfig, PreprocessConfig, SplitConfig
from mribench.data import images, properties, shortcuts
from mribench.data.preparation import prepare, validate
from mribench.data.registry import SAMPLE_DIR
from mribench.data.samples import DataError
from mribench.data.scan import scan_folder
from mribench.data.splits import split_indices
from real_data import ROOT


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    images.set_cache_dir(tmp_path / "cache")


def real_images() -> list[Image.Image]:
    """The 64 real MRI slices of the shipped sample, in a fixed order."""
    return [Image.open(p).convert("L") for p in sorted(SAMPLE_DIR.rglob("*.jpg"))]


def synthetic(root: Path, planted: bool) -> Path:
    """Classes a and b get alternate real images (so content says nothing about the class);
    planted: a at 96x96, b at 80x80; else each class half at each size. 3 of 4 images train."""
    for i, img in enumerate(real_images()):
        cls = "ab"[i % 2]
        side = (96 if cls == "a" else 80) if planted else (96 if (i // 4) % 2 else 80)
        split = "test" if i % 4 == 3 or i % 4 == 2 else "train"
        folder = root / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        img.resize((side, side)).save(folder / f"{i}.jpg", quality=90)
    return root


def audit_folder(root: Path) -> dict:
    scan = scan_folder(root)
    records = validate(scan, None)
    rows = properties.of_files([(r.path, r.sha) for r in records])
    return shortcuts.audit(rows, [r.cls for r in records], [r.split for r in records], root.name)


def test_planted_size_shortcut_is_found(tmp_path):
    out = audit_folder(synthetic(tmp_path / "planted", planted=True))
    base = out["baseline"]
    print("planted:", base["cv"], base["test"])
    assert base["cv"]["balanced_accuracy"] >= 0.95
    assert base["test"]["accuracy"] >= 0.95 and base["judged_on"] == "test"
    assert out["warning"] and "balanced accuracy" in out["warning"]
    size = {(r["class"], r["side"]): r["distribution"] for r in out["distributions"]
            if r["property"] == "size"}
    assert size[("a", "train")] == "96x96 100 %" and size[("b", "test")] == "80x80 100 %"


def test_mixed_sizes_are_near_chance_and_quiet(tmp_path):
    out = audit_folder(synthetic(tmp_path / "mixed", planted=False))
    base = out["baseline"]
    print("mixed:", base["cv"], base["test"])
    # 32 images a side: one binomial standard deviation is 0.09, so "near chance" is within 0.25
    # (cross-validation on label-free features tends to land below chance, not above)
    assert abs(base["cv"]["balanced_accuracy"] - 0.5) <= 0.25
    assert abs(base["test"]["balanced_accuracy"] - 0.5) <= 0.25
    assert out["warning"] is None


def test_properties_of_hand_built_files(tmp_path):
    grey = np.zeros((10, 20), np.uint8)
    grey[2:8, 4:16] = 200  # a 12x6 lit block in a 4-px black frame left/right, 2-px top/bottom
    for cls in ("x", "y"):
        (tmp_path / "set" / cls).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(grey).save(tmp_path / "set/x" / f"scan {i}.png")
    rgb = np.full((30, 30, 3), 120, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "set/y/img(7).jpg", quality=75)
    scan = scan_folder(tmp_path / "set")
    records = validate(scan, None)
    rows = properties.of_files([(r.path, r.sha) for r in records])
    png, jpg = rows[0], rows[2]
    assert (png["width"], png["height"], png["aspect"], png["format"], png["mode"],
            png["bit_depth"], png["jpeg_quality"]) == (20, 10, 2.0, "PNG", "L", 8, None)
    assert png["frame"] == 0.4 and png["mean"] == 72.0 and png["background"] == 0.0
    assert png["p50"] == 0.0 and png["p99"] == 200.0 and png["name_pattern"] == "scan N.png"
    assert (jpg["size"], jpg["format"], jpg["mode"], jpg["bit_depth"], jpg["jpeg_quality"]) == \
        ("30x30", "JPEG", "RGB", 24, 75)
    assert abs(jpg["mean"] - 120) <= 2 and jpg["frame"] == 0.0
    table = shortcuts.distributions(rows, ["x", "x", "y"], ["all"] * 3)
    got = {(r["property"], r["class"]): r["distribution"] for r in table}
    assert got[("size", "x")] == "20x10 100 %" and got[("format", "y")] == "JPEG 100 %"
    assert got[("jpeg_quality", "x")] == "- 100 %" and got[("name_pattern", "y")] == "img(N).jpg 100 %"
    # cached by content: a second call measures nothing (the cache file is not rewritten)
    cache = images.cache_dir() / properties.PROPS_FILE
    before = cache.stat().st_mtime_ns
    assert properties.of_files([(r.path, r.sha) for r in records]) == rows
    assert cache.stat().st_mtime_ns == before


def test_hold_out_keeps_a_group_together_on_the_test_side():
    labels = [i % 2 for i in range(20)]
    held = [i < 6 for i in range(20)]
    groups = [[5, 12], [13, 14]]  # 12 copies held-out 5: it is held out with it
    cfg = SplitConfig(protocol="holdout", hold_out={"source": ["s"]})
    parts = split_indices(labels, ["all"] * 20, cfg, seed=0, fold=None, name="t", groups=groups,
                          held=held)
    assert parts["test"] == [0, 1, 2, 3, 4, 5, 12]
    assert not set(parts["test"]) & (set(parts["train"]) | set(parts["val"]))


def test_hold_out_source_never_reaches_train_or_val(tmp_path):
    """Two file-name families (sources) per class; holding one out makes it the whole test."""
    for i, img in enumerate(real_images()[:32]):
        cls, family = "ab"[i % 2], ("scanner", "web")[(i // 2) % 2]
        folder = tmp_path / "set" / cls
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{family}_{i}.png")
    ds = DatasetConfig(name="families", root=str(tmp_path / "set"), near_bits=0)
    split = SplitConfig(protocol="holdout", groups="exact", hold_out={"source": ["web_N"]})
    for seed in (0, 1):
        prepared = prepare(ds, split, PreprocessConfig(image_size=32), seed=seed, fold=None,
                           data_dir=None)
        rows = prepared.split_rows()
        assert {r["source"] for r in rows if r["split"] in ("train", "val")} == {"scanner_N"}
        assert {r["source"] for r in rows if r["split"] == "test"} == {"web_N"}
        assert sum(r["split"] == "test" for r in rows) == 16
        assert "test" in prepared.shortcuts["baseline"]
    with pytest.raises(DataError, match=r"every image of class\(es\) \['a', 'b'\]"):
        prepare(ds, SplitConfig(protocol="holdout", hold_out={"source": ["web_N", "scanner_N"]}),
                PreprocessConfig(image_size=32), seed=0, fold=None, data_dir=None)
    with pytest.raises(DataError, match="matches no image"):
        prepare(ds, SplitConfig(protocol="holdout", hold_out={"source": ["nope"]}),
                PreprocessConfig(image_size=32), seed=0, fold=None, data_dir=None)


def test_installed_command_audits_the_shipped_sample_outside_the_repository(tmp_path):
    assert not tmp_path.resolve().is_relative_to(ROOT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENCHMARK_"))}
    env["BENCHMARK_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([console_script(), "data", "audit", "brain-tumor-mri-7023-sample",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    short = out["shortcuts"]
    assert short["files"] == 64 and short["baseline"]["test"]["n"] == 32
    assert 0 <= short["baseline"]["test"]["accuracy"] <= 1
    assert {r["property"] for r in short["distributions"]} >= {"size", "format", "source"}
    assert out["rows"][0]["kind"] == "exact"  # the duplicate audit is still there
    text = subprocess.run([console_script(), "data", "audit", "brain-tumor-mri-7023-sample",
                           "--only", "shortcuts"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert text.returncode == 0 and "metadata-only baseline" in text.stdout
    assert "Duplicate audit" not in text.stdout and "Shortcut verdict" in text.stdout


def _rows(rng, labels: list[str], effect: float) -> list[dict]:
    """Property rows drawn at random; `effect` shifts class b's width by that many SDs."""
    return [{"width": 300 + 40 * (rng.normal() + (effect if y == "b" else 0)), "height": 300.0,
             "aspect": 1.0, "file_kb": rng.normal(20, 4), "bytes_per_pixel": rng.normal(0.2, 0.03),
             "bit_depth": 24, "jpeg_quality": 90, "frame": rng.uniform(0, 0.3),
             "mean": rng.normal(50, 10), "std": rng.normal(40, 5),
             **{f"p{k}": rng.normal(k, 3) for k in (1, 5, 50, 95, 99)},
             "background": rng.normal(2, 1), "format": "JPEG", "size": "300x300", "mode": "RGB"}
            for y in labels]


def test_warning_rate_under_no_shortcut_and_under_a_real_one():
    """The verdict's rule (balanced accuracy 0.10 above 1/k and the Wilson lower bound above the
    majority share) simulated: properties independent of the label rarely warn, a 3-SD shift in
    one property almost always does. 60 train + 60 test images, two classes, 25 replicates."""
    labels = ["a", "b"] * 60
    sides = ["train"] * 60 + ["test"] * 60
    counts = {}
    for effect in (0.0, 3.0):
        rng = np.random.default_rng(7)
        warned = sum(shortcuts.audit(_rows(rng, labels, effect), labels, sides, "sim", seed=r,
                                     cross_validate=False)["warning"] is not None
                     for r in range(25))
        counts[effect] = warned
    print(f"warnings in 25 replicates: no shortcut {counts[0.0]}, shifted width {counts[3.0]}")
    assert counts[0.0] <= 2 and counts[3.0] >= 23
