"""prepare(): real sets, user folders and manifests, split protocols, validation errors, dedup."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mribench.config.schema import DatasetConfig, PreprocessConfig, SplitConfig
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
    make_folder(tmp_path / "imgs", {"p": 4, "q": 4})
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
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "b" / "text.jpg").write_text("not an image at all")
    (root / "b" / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as err:
        prep(root)
    msg = str(err.value)
    assert "broken.jpg: cannot decode" in msg and "BytesIO" not in msg
    assert "cannot identify image file text.jpg" in msg  # not PIL's <_io.BytesIO object ...>
    assert "zero.png: empty file (0 bytes)" in msg
    assert "notes.txt" in msg and "not an image" in msg and "4 problem(s)" in msg
    data = prep(root, on_bad_image="skip")
    assert data.classes == ["a", "b"]
    assert sorted(Path(p).name for p, _ in data.skipped) == ["broken.jpg", "notes.txt",
                                                             "text.jpg", "zero.png"]
    assert data.audit["n_skipped"] == 4


@pytest.mark.parametrize("case", ["empty class", "class missing from test", "extra class in test",
                                  "every file of a class bad"])
def test_skip_leaves_out_files_never_classes(tmp_path, case):
    layout = {"train/a": 3, "train/b": 3, "test/a": 2, "test/b": 2}
    if case == "class missing from test":
        del layout["test/b"]
    if case == "extra class in test":
        layout["test/c"] = 2
    root = make_folder(tmp_path / "ds", layout)
    if case == "empty class":
        (root / "train" / "c").mkdir()
        (root / "test" / "c").mkdir()
    if case == "every file of a class bad":
        for f in (root / "test" / "b").iterdir():
            f.write_bytes(b"garbage")
    expected = {"empty class": "empty class folder", "class missing from test":
                r"class 'b' has no files in split\(s\) \['test'\]",
                "extra class in test": r"class 'c' has no files in split\(s\) \['train'\]",
                "every file of a class bad": r"class 'b' has no files in split\(s\) \['test'\]"}
    for mode in ("error", "skip"):  # on the old code, skip trained a 1- or 3-class model
        with pytest.raises(DataError, match=expected[case]) as err:
            prep(root, "official", on_bad_image=mode)
        if mode == "skip":
            assert "never classes" in str(err.value)


def _manifest(path: Path, rows: list[tuple[str, str]], encoding: str = "utf-8") -> Path:
    text = "path,label\n" + "".join(f"{p},{label}\n" for p, label in rows)
    path.write_bytes(text.encode(encoding))
    return path


def test_manifest_saved_by_excel_with_bom_is_read(tmp_path):
    root = make_folder(tmp_path / "imgs", {"p": 4, "q": 4})
    rows = [(f"imgs/{c}/img{i:02d}.png", c) for c in "pq" for i in range(4)]
    manifest = _manifest(tmp_path / "list.csv", rows, "utf-8-sig")
    assert manifest.read_bytes().startswith(b"\xef\xbb\xbf")
    data = prepare(DatasetConfig(name="listed", manifest=str(manifest)), SplitConfig(
        protocol="holdout"), PRE, seed=0, fold=None, data_dir=None)
    assert data.classes == ["p", "q"] and root.is_dir()
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,label\nimgs/p/img00.png,tumeur_b\xe9nigne\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv:2: not UTF-8 text \(byte 36"):
        prepare(DatasetConfig(name="listed", manifest=str(latin)), SplitConfig(), PRE, seed=0,
                fold=None, data_dir=None)


def test_labels_differing_only_in_case_or_spaces_are_an_error_unless_folded(tmp_path):
    make_folder(tmp_path / "imgs", {"p": 6, "q": 6})
    rows = ([(f"imgs/p/img{i:02d}.png", "Glioma" if i % 2 else "glioma") for i in range(6)]
            + [(f"imgs/q/img{i:02d}.png", "notumor " if i == 0 else "notumor") for i in range(6)])
    manifest = _manifest(tmp_path / "list.csv", rows)

    def run(**ds):
        return prepare(DatasetConfig(name="listed", manifest=str(manifest), **ds),
                       SplitConfig(protocol="holdout"), PRE, seed=0, fold=None, data_dir=None)

    with pytest.raises(DataError, match=r"labels 'Glioma' and 'glioma' differ only in case or "
                                        r"surrounding spaces \(and 1 more") as err:
        run()
    assert "label_map: {'glioma': 'Glioma'}" in str(err.value)
    with pytest.raises(DataError, match="'notumor' and 'notumor '"):
        run(label_map={"Glioma": "glioma"})
    data = run(label_map={"Glioma": "glioma", "notumor ": "notumor"})
    assert data.classes == ["glioma", "notumor"]
    assert sum(map(len, data.splits.values())) == 12


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


def test_odd_folder_contents_are_named_never_dropped_or_added(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 3, "b": 3})
    (root / "a" / "fake.jpg").mkdir()  # a directory named like an image
    (root / "a" / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DataError) as err:
        prep(root)
    msg = str(err.value)
    assert "fake.jpg: a directory, not an image file" in msg
    assert "dangling.jpg: a dangling link, not an image file" in msg
    data = prep(root, on_bad_image="skip")  # skipped, and listed
    assert sorted(Path(p).name for p, _ in data.skipped) == ["dangling.jpg", "fake.jpg"]
    (root / "a" / "fake.jpg").rmdir()
    (root / "a" / "dangling.jpg").unlink()
    make_folder(root, {"b/sub/deeper": 1})  # a sub-folder in a class folder is refused
    for mode in ("error", "skip"):
        with pytest.raises(DataError, match="sub.*not read: move its images"):
            prep(root, on_bad_image=mode)


def test_a_label_map_key_that_names_no_label_stops_before_training(tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 3, "b": 3})
    with pytest.raises(DataError, match=r"label_map names \['Astro'\], which match no label; its "
                                        r"labels are \['a', 'b'\]"):
        prep(root, label_map={"Astro": "a"})
    assert prep(root, label_map={"b": "a2"}).classes == ["a", "a2"]


def test_an_external_label_map_key_that_names_no_label_stops_too(tmp_path):
    from mribench.config.external import ExternalConfig
    from mribench.run.external import prepare_external

    root = make_folder(tmp_path / "hospital", {"glioma": 2, "healthy": 2})
    cfg = ExternalConfig(name="hospital", root=str(root), label_map={"Astro": "glioma",
                                                                     "healthy": "notumor"})
    with pytest.raises(DataError, match=r"label_map names \['Astro'\], which match no label"):
        prepare_external(cfg, PRE, ["glioma", "notumor"], None)
    ok = ExternalConfig(name="hospital", root=str(root), label_map={"healthy": "notumor"})
    assert prepare_external(ok, PRE, ["glioma", "notumor"], None).classes == ["glioma", "notumor"]


def test_skip_mode_says_on_the_console_how_many_files_it_left_out(
        tmp_path, mlflow_store, monkeypatch, capsys):
    import yaml

    from mribench.cli.main import main

    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "ds", {"Training/a": 6, "Training/b": 6, "Testing/a": 3,
                                         "Testing/b": 3})
    (root / "Training" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    suite = {"name": "skips", "experiment": "skips",
             "datasets": [{"name": "mine", "root": str(root), "on_bad_image": "skip"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 32}, "training": {"epochs": 1, "batch_size": 4},
             "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0],
             "explain": {"methods": []}}
    path = tmp_path / "skips.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["suite", str(path)]) == 0
    assert ("dataset mine: 1 bad file(s) skipped (on_bad_image: skip), listed in each cell "
            "run's data/skipped_files.csv") in capsys.readouterr().err
