"""prepare(): real sets, user folders and manifests, split protocols, validation errors, dedup."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.config import DatasetConfig, PreprocessConfig, SplitConfig
from mribench.data import DataError, load_image, prepare
from mribench.data.registry import KNOWN
from real_data import DATA_DIR as REAL
from real_data import MRI_7023, SAMPLE, needs_real

PRE = PreprocessConfig(image_size=16)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))


def scan_image(seed: int, size: int = 24) -> Image.Image:
    """A distinct synthetic 'slice': a bright blob on black, position and size from the seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.integers(4, size - 4, 2).tolist() + [int(rng.integers(3, 8))]
    arr = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, 200, 0) + rng.integers(0, 40, (size, size))
    return Image.fromarray(arr.astype(np.uint8))


def make_folder(root: Path, layout: dict[str, int], start: int = 0) -> Path:
    """layout: 'split/class' or 'class' -> number of generated png files."""
    seed = start
    for rel, n in layout.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            scan_image(seed).save(root / rel / f"img{i:02d}.png")
            seed += 1
    return root


def prep(root: Path, protocol: str = "holdout", seed: int = 0, fold=None, **ds):
    cfg = DatasetConfig(name="mine", root=str(root), **ds)
    return prepare(cfg, SplitConfig(protocol=protocol), PRE, seed=seed, fold=fold, data_dir=None)


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_real(n)) for n in
                                  (MRI_7023, "brain-tumor-classification-3264")] + [SAMPLE])
def test_real_four_class_sets_share_canonical_labels(name):
    data = prepare(DatasetConfig(name=name, subset_per_class=3), SplitConfig(), PRE, seed=0, fold=None,
                   data_dir=str(REAL))
    assert data.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert data.root == (KNOWN[name].bundled or (REAL / name).resolve())
    assert len(data.splits["test"]) == 12  # official Testing folder, 3 per class
    assert len(data.splits["train"]) + len(data.splits["val"]) == 12
    assert {r["class"] for r in data.split_rows()} == set(data.classes)
    assert data.audit["files"] == 24 and data.audit["split_group_kind"] == "near"


@needs_real("brain-mri-binary-253")
def test_real_binary_set_has_no_official_split(monkeypatch):
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(REAL))  # found through the environment
    ds = DatasetConfig(name="brain-mri-binary-253", subset_per_class=10)
    with pytest.raises(DataError, match="no official train/test split"):
        prepare(ds, SplitConfig(), PRE, seed=0, fold=None, data_dir=None)
    data = prepare(ds, SplitConfig(protocol="holdout"), PRE, seed=0, fold=None, data_dir=None)
    assert data.classes == ["no", "yes"] and sum(map(len, data.splits.values())) == 20


def test_missing_dataset_says_where_it_looked_and_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "arg").mkdir()  # an explicit --data-dir must exist (else that is the error)
    with pytest.raises(DataError) as err:
        prepare(DatasetConfig(name="brain-mri-binary-253"), SplitConfig(), PRE, seed=0, fold=None,
                data_dir=str(tmp_path / "arg"))
    msg = str(err.value)
    for where in ("arg/brain-mri-binary-253", "env/brain-mri-binary-253", "data/brain-mri-binary-253"):
        assert where in msg
    assert "mribench data fetch brain-mri-binary-253" in msg


def test_holdout_is_stratified_disjoint_and_seeded(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 20, "b": 10})
    first, again, other = prep(root, seed=1), prep(root, seed=1), prep(root, seed=2)
    sizes = {k: len(v) for k, v in first.splits.items()}
    assert sizes == {"train": 21, "val": 3, "test": 6}  # per class: 20% test, then 15% of the rest
    paths = [s.path for part in first.splits.values() for s in part]
    assert len(paths) == len(set(paths)) == 30
    assert sum(s.label == 1 for s in first.splits["test"]) == 2
    assert first.digest() == again.digest() and first.split_rows() == again.split_rows()
    assert first.digest() != other.digest()


def test_kfold_tests_cover_every_file_once(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 7, "b": 5})
    tests = [prep(root, "kfold", fold=f).splits["test"] for f in range(5)]
    paths = [s.path for t in tests for s in t]
    assert len(paths) == len(set(paths)) == 12
    assert max(map(len, tests)) - min(map(len, tests)) <= 1
    with pytest.raises(DataError, match="fold in 0..4"):
        prep(root, "kfold", fold=5)


def test_official_uses_split_folders_and_carves_validation(tmp_path):
    root = make_folder(tmp_path / "ds", {"Train/x": 10, "Train/y": 10, "test/x": 3, "test/y": 3})
    data = prep(root, "official")
    assert [len(data.splits[k]) for k in ("train", "val", "test")] == [16, 4, 6]
    assert all(s.path.parent.parent.name == "test" for s in data.splits["test"])


def test_manifest_with_splits(tmp_path):
    root = make_folder(tmp_path / "imgs", {"p": 4, "q": 4})
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        for i in range(4):
            for cls in "pq":
                w.writerow([f"imgs/{cls}/img{i:02d}.png", f"class-{cls}", "test" if i == 0 else "train"])
    data = prepare(DatasetConfig(name="listed", manifest=str(manifest)), SplitConfig(), PRE, seed=0,
                   fold=None, data_dir=None)
    assert data.classes == ["class-p", "class-q"]
    assert sorted(s.path.name for s in data.splits["test"]) == ["img00.png", "img00.png"]


def test_bad_files_stop_the_suite_naming_them(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 3, "b": 3})
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "b" / "notes.txt").write_text("hello")
    (root / "c").mkdir()
    with pytest.raises(DataError) as err:
        prep(root)
    msg = str(err.value)
    assert "broken.jpg" in msg and "cannot decode" in msg
    assert "notes.txt" in msg and "not an image" in msg
    assert "empty class folder" in msg and "3 problem(s)" in msg
    data = prep(root, on_bad_image="skip")
    assert data.classes == ["a", "b"]
    assert sorted(Path(p).name for p, _ in data.skipped) == ["broken.jpg", "c", "notes.txt"]
    assert data.audit["n_skipped"] == 3


def test_class_missing_from_a_split(tmp_path):
    root = make_folder(tmp_path / "ds", {"train/a": 3, "train/b": 3, "test/a": 2})
    with pytest.raises(DataError, match=r"class 'b' has no files in split\(s\) \['test'\]"):
        prep(root, "official")
    data = prep(root, "official", on_bad_image="skip")
    assert data.classes == ["a"] and len(data.skipped) == 3


def test_image_modes_sizes_and_extensions(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (30, 20, 3), dtype=np.uint8)
    images = {
        "gray.png": Image.fromarray(rgb[..., 0]),
        "rgb.JPG": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((30, 20), 255, np.uint8)])),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "cmyk.jpeg": Image.fromarray(rgb).convert("CMYK"),
        "deep.tif": Image.fromarray(rgb[..., 0].astype(np.uint16) * 16),  # 12-bit data in I;16
        "big.bmp": Image.fromarray(rgb).resize((90, 50)),
    }
    for name, img in images.items():
        img.save(tmp_path / name)
    for channels in (1, 3):
        pre = PreprocessConfig(image_size=12, channels=channels, interpolation="area")
        for name in images:
            arr = load_image(tmp_path / name, pre)
            assert arr.shape == (12, 12, channels) and arr.dtype == np.uint8, name
    nearest = PreprocessConfig(image_size=12, channels=1, interpolation="nearest")
    deep, gray = load_image(tmp_path / "deep.tif", nearest), load_image(tmp_path / "gray.png", nearest)
    # 12-bit data is stretched by its own maximum to the 8-bit range, not left dark
    expected = gray.astype(float) * 255 / rgb[..., 0].max()
    assert np.abs(deep - expected).max() <= 1


def _write_leaky_set(root: Path) -> None:
    make_folder(root, {"train/a": 4, "train/b": 4, "test/a": 3, "test/b": 3})
    (root / "test/a/img00.png").write_bytes((root / "train/a/img01.png").read_bytes())  # exact copy
    near = np.asarray(Image.open(root / "train/b/img02.png"), dtype=np.float64) * 1.2 + 5  # brighter
    (root / "test/b/img00.png").unlink()
    Image.fromarray(np.clip(near, 0, 255).astype(np.uint8)).save(root / "test/b/img00.jpg", quality=95)


@pytest.mark.parametrize("dedup, clean", [("none", None), ("exact", 5), ("near", 4)])
def test_dedup_removes_cross_split_copies_from_clean_test(tmp_path, dedup, clean):
    _write_leaky_set(tmp_path / "ds")
    data = prep(tmp_path / "ds", "official", dedup=dedup)
    assert len(data.splits["test"]) == 6
    assert (None if data.clean_test is None else len(data.clean_test)) == clean
    assert data.audit["exact_test_files_leaked"] == 1 and data.audit["near_test_files_leaked"] == 2
