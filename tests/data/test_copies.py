"""`dedup: robust`: cropped, rescaled, rotated and re-encoded copies of real MRI slices are found
(the audit command, the console script, prepare's clean test), distinct slices are left alone,
and the matcher's thresholds are validated and logged."""
from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess

import pytest
from PIL import Image
from pydantic import ValidationError

from mribench.cli.data import register
from mribench.config.schema import PreprocessConfig, SplitConfig
from mribench.data.preparation import prepare
from mribench.data.registry import SAMPLE_DIR

PRE = PreprocessConfig(image_size=32)
# Real slices of the shipped sample (Tr-piTr_0006 and _0007, adjacent slices, are left out:
# shrunk to 64 px they align at correlation 0.904, over min_correlation; the 224-px originals
# stay below it at 0.884; see docs/robust-copies.md).
ORIGINALS = [f"Training/{c}/Tr-{c[:2]}Tr_000{i}.jpg" for c in ("glioma", "meningioma")
             for i in range(4)]
DISTINCT = [f"Testing/{c}/Te-{c[:2]}Tr_000{i}.jpg" for c in ("glioma", "meningioma") for i in range(3)]


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mribench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def crop(img: Image.Image, keep: float, left: float, top: float) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * keep), round(h * keep)
    x, y = round((w - cw) * left), round((h - ch) * top)
    return img.crop((x, y, x + cw, y + ch))


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def rescale(img: Image.Image, factor: float) -> Image.Image:
    return img.resize((round(img.width * factor), round(img.height * factor)), Image.Resampling.BICUBIC)


# one transform per original (the first four), as the issue names them, and all at once
COPIES = {
    "crop": lambda im: crop(im, 0.82, 0.9, 0.2),
    "rescale": lambda im: rescale(im, 0.8),
    "rotate": lambda im: im.rotate(-5, resample=Image.Resampling.BILINEAR),
    "reencode": lambda im: jpeg(im, 60),
    "all": lambda im: jpeg(rescale(crop(im, 0.88, 0.3, 0.7), 1.2).rotate(
        4, resample=Image.Resampling.BILINEAR), 75),
}


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """train: the originals; test: a transformed copy of five of them, and six other slices."""
    root = tmp_path_factory.mktemp("copied")
    for rel in ORIGINALS:
        cls = rel.split("/")[1]
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE_DIR / rel, root / "train" / cls / rel.rsplit("/", 1)[1])
    for (kind, make), rel in zip(COPIES.items(), ORIGINALS + ORIGINALS):
        cls = rel.split("/")[1]
        (root / "test" / cls).mkdir(parents=True, exist_ok=True)
        with Image.open(SAMPLE_DIR / rel) as img:
            make(img.convert("L")).save(root / "test" / cls / f"copy-{kind}.png")
    for rel in DISTINCT:
        shutil.copy(SAMPLE_DIR / rel, root / "test" / rel.split("/")[1] / rel.rsplit("/", 1)[1])
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))


def test_audit_finds_every_transformed_copy_and_nothing_else(copied, tmp_path, capsys):
    groups = tmp_path / "groups.csv"
    assert cli("data", "audit", str(copied), "--dedup", "robust", "--json", "--csv", str(groups)) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in out["rows"]}
    assert rows["robust"]["test_files_leaked"] == len(COPIES)
    assert rows["near"]["test_files_leaked"] < len(COPIES)  # the crops slip past the hash
    assert out["robust_more_than_near"]["test_files_leaked"] == (
        len(COPIES) - rows["near"]["test_files_leaked"])
    assert out["copy_match_min_correlation"] == 0.9 and out["copy_match_candidates"] == 8
    flagged = {r["path"] for r in csv.DictReader(groups.open()) if r["kind"] == "robust"}
    assert {p for p in flagged if p.startswith("test/")} == {
        f"test/{rel.split('/')[1]}/copy-{kind}.png" for kind, rel in zip(COPIES, ORIGINALS + ORIGINALS)}
    assert all(r["label_conflict"] == "False" for r in csv.DictReader(groups.open()))


def test_thresholds_decide_and_default_audit_has_no_robust_row(copied, capsys):
    # a correlation no resampled copy reaches: only the bit-exact-after-decoding re-encode is left
    assert cli("data", "audit", str(copied), "--dedup", "robust", "--json",
               "--copy-match", "min_correlation=0.999") == 0
    strict = {r["kind"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert strict["robust"]["test_files_leaked"] < len(COPIES)
    assert cli("data", "audit", str(copied), "--json") == 0
    assert [r["kind"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["exact", "near"]


def test_bad_copy_match_option_is_one_line(copied, capsys):
    from mribench.data.samples import DataError

    with pytest.raises(DataError, match="--copy-match min_inliers: .*greater than or equal to 3"):
        cli("data", "audit", str(copied), "--dedup", "robust", "--copy-match", "min_inliers=1")
    with pytest.raises(DataError, match="expected KEY=VALUE"):
        cli("data", "audit", str(copied), "--dedup", "robust", "--copy-match", "min_inliers")


def test_console_script_from_outside_the_repository(copied, tmp_path):
    def audit():
        done = subprocess.run([shutil.which("mribench"), "data", "audit", str(copied), "--dedup",
                               "robust", "--json", "--cache-dir", str(tmp_path / "c")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return {r["kind"]: r for r in json.loads(done.stdout)["rows"]}, done.stderr

    rows, log = audit()
    assert rows["robust"]["test_files_leaked"] == len(COPIES) and "verifying" in log
    again, log = audit()  # a warm cache verifies nothing again, and says the same
    assert again == rows and "verifying" not in log


def test_prepare_leaves_robust_copies_out_of_the_clean_test(copied):
    from mribench.config.schema import DatasetConfig

    ds = DatasetConfig(name="copied", root=str(copied), dedup="robust")
    data = prepare(ds, SplitConfig(val_fraction=0.25), PRE, seed=0, fold=None, data_dir=None)
    clean = {s.path.name for s in data.clean_test}
    assert clean == {rel.rsplit("/", 1)[1] for rel in DISTINCT}
    assert data.audit["robust_test_files_leaked"] == len(COPIES)
    assert data.audit["copy_match_min_inliers"] == 25
    near = prepare(DatasetConfig(name="copied", root=str(copied)), SplitConfig(val_fraction=0.25), PRE,
                   seed=0, fold=None, data_dir=None)
    assert len(near.clean_test) > len(clean) and "robust_groups" not in near.audit


def test_config_accepts_robust_and_validates_thresholds():
    from mribench.config.schema import DatasetConfig

    ds = DatasetConfig(name="brain-tumor-mri-7023", dedup="robust",
                       copy_match={"min_correlation": 0.95, "candidates": 4})
    assert ds.copy_match.min_correlation == 0.95 and ds.copy_match.min_inliers == 25
    assert SplitConfig(groups="robust").groups == "robust"
    for bad, where in (({"min_correlation": 1.5}, "min_correlation"), ({"candidates": 0}, "candidates"),
                       ({"min_inlier": 3}, "min_inlier")):
        with pytest.raises(ValidationError, match=where):
            DatasetConfig(name="brain-tumor-mri-7023", dedup="robust", copy_match=bad)
    with pytest.raises(ValidationError, match="dedup"):
        DatasetConfig(name="brain-tumor-mri-7023", dedup="cropped")
