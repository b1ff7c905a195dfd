"""Leakage audit and the `mribench data list | audit` commands."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.cli.data import register
from mribench.data.registry import SAMPLE_DIR
from real_data import DATA_DIR as REAL
from real_data import SAMPLE, needs_real

ALL = ("brain-tumor-mri-7023", "brain-tumor-classification-3264", "brain-mri-binary-253")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mribench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def blob(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((size, size))
    for _ in range(4):
        cy, cx, r = rng.integers(6, size - 6, 2).tolist() + [int(rng.integers(3, 9))]
        out += np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, rng.integers(60, 120), 0)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture
def leaky(tmp_path) -> Path:
    """train/test folders with one exact cross-split copy, one brighter re-encoded copy in test,
    and one image filed under both classes."""
    root = tmp_path / "leaky"
    for split, n, start in (("train", 5, 0), ("test", 3, 100)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = blob(start + i + (50 if cls == "b" else 0))
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    (root / "test/a/0.png").write_bytes((root / "train/a/1.png").read_bytes())
    bright = np.clip(blob(52).astype(int) * 1.2 + 5, 0, 255).astype(np.uint8)
    Image.fromarray(bright).save(root / "test/b/0.jpg", quality=60)  # near copy of train/b/2.png
    (root / "test/b/0.png").unlink()
    (root / "train/b/4.png").write_bytes((root / "train/a/3.png").read_bytes())  # label conflict
    return root


def test_audit_counts_exact_near_and_conflicts(leaky, tmp_path, capsys):
    groups_csv = tmp_path / "groups.csv"
    assert cli("data", "audit", str(leaky), "--json", "--csv", str(groups_csv)) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in out["rows"]}
    assert out["files"] == 16 and out["splits"] == {"test": 6, "train": 10}
    assert rows["exact"]["groups"] == 2 and rows["exact"]["cross_split_groups"] == 1
    assert rows["exact"]["test_files_leaked"] == 1 and rows["exact"]["label_conflict_groups"] == 1
    assert rows["near"]["groups"] == 3 and rows["near"]["test_files_leaked"] == 2
    written = list(csv.DictReader(groups_csv.open()))
    conflict = {r["path"] for r in written if r["kind"] == "exact" and r["label_conflict"] == "True"}
    assert conflict == {"train/a/3.png", "train/b/4.png"}


def test_zero_threshold_finds_only_exact(leaky, capsys):
    cli("data", "audit", str(leaky), "--json", "--near-bits", "0")
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in out["rows"]}
    assert rows["near"]["groups"] == rows["exact"]["groups"] == 2
    # the sweep over thresholds (bits of 256) grows monotonically and meets the main table
    sweep = {r["near_bits"]: r for r in out["near_by_threshold"]}
    assert sorted(sweep) == [0, 8, 16, 24, 32]
    assert sweep[0]["groups"] == 2 and sweep[16]["test_files_leaked"] == 2
    leaked = [sweep[b]["test_files_leaked"] for b in sorted(sweep)]
    assert leaked == sorted(leaked)


def test_old_threshold_key_is_refused_with_the_conversion():
    from mribench.config.schema import DatasetConfig

    with pytest.raises(ValueError, match="near_threshold 4 = near_bits 16"):
        DatasetConfig(name="brain-tumor-mri-7023", near_threshold=4)


def test_audit_reads_a_manifest(leaky, tmp_path, capsys):
    manifest = tmp_path / "files.csv"
    lines = ["path,label,split"] + [f"{p.relative_to(leaky.parent)},{p.parent.name},{p.parent.parent.name}"
                                    for p in sorted(leaky.rglob("*.*"))]
    manifest.write_text("\n".join(lines) + "\n")
    assert cli("data", "audit", str(manifest), "--json") == 0
    rows = {r["kind"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["exact"]["test_files_leaked"] == 1 and rows["near"]["test_files_leaked"] == 2


def test_audit_names_unknown_dataset(capsys):
    from mribench.cli.main import main

    assert main(["data", "audit", "no-such-set"]) == 2  # bad input: exit 2, as for every command
    assert "no-such-set" in capsys.readouterr().err


@needs_real("brain-mri-binary-253")
def test_real_binary_set_audit(capsys):
    assert cli("data", "audit", "brain-mri-binary-253", "--data-dir", str(REAL), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in out["rows"]}
    assert out["files"] == 253 and out["unreadable"] == []
    assert (rows["exact"]["groups"], rows["exact"]["redundant_files"]) == (22, 25)
    assert rows["exact"]["label_conflict_groups"] == 0


@needs_real(*ALL)
def test_list_reports_location_and_completeness(capsys):
    assert cli("data", "list", "--data-dir", str(REAL), "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {*ALL, SAMPLE}
    assert rows["brain-tumor-classification-3264"]["complete"] is True
    assert rows["brain-tumor-classification-3264"]["counts"] == {"Training": 2870, "Testing": 394}
    # this copy lacks 4 notumor training images of the published 7023
    assert rows["brain-tumor-mri-7023"]["counts"]["Training"] == 5708
    assert rows["brain-tumor-mri-7023"]["complete"] is False
    assert rows["brain-mri-binary-253"]["path"] == str((REAL / "brain-mri-binary-253").resolve())


def test_list_without_data_shows_nothing_found(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCHMARK_DATA_DIR", raising=False)
    assert cli("data", "list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert all(rows[n]["path"] is None and rows[n]["complete"] is False for n in ALL)
    # the sample ships with the package: always there, always complete
    assert rows[SAMPLE]["path"] == str(SAMPLE_DIR) and rows[SAMPLE]["complete"] is True


def test_sample_audit_finds_no_duplicates(capsys):
    assert cli("data", "audit", SAMPLE, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"] == 64 and out["splits"] == {"test": 32, "train": 32}
    assert all(r["groups"] == 0 for r in out["rows"])  # tools/make_sample.py leaves them out
