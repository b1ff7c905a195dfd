"""External test sets on tiny real subsets: label maps, the cross-dataset duplicate audit (a
training image copied into the external set is removed and counted), and the logged metrics."""
from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from mribench.config.schema import ExternalConfig, PreprocessConfig
from mribench.config.suite_file import load_suite
from mribench.data import images
from mribench.data.samples import DataError
from mribench.report.summary import report
from mribench.run.external import cross_duplicates, prepare_external
from mribench.run.suite import SuiteOptions, run_suite

PRE = PreprocessConfig(image_size=32)
FOUR = ["glioma", "meningioma", "notumor", "pituitary"]
T3264 = "brain-tumor-classification-3264"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    images.set_cache_dir(tmp_path / "cache")


def test_publisher_folder_names_map_onto_the_model_classes(data_dir, cache):
    cfg = ExternalConfig(name=T3264, subset_per_class=2,
                         label_map={"glioma_tumor": "glioma", "no_tumor": "notumor"})
    ext = prepare_external(cfg, PRE, FOUR, str(data_dir))
    assert ext.classes == FOUR and list(ext.fold) == [0, 1, 2, 3]
    assert len(ext.samples) == 16  # 2 per class in Training and in Testing
    folders = {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma",
               "no_tumor": "notumor", "pituitary_tumor": "pituitary"}
    for s in ext.samples:  # the label follows the publisher's folder
        assert ext.classes[s.label] == folders[s.path.parent.name]


def test_four_class_predictions_fold_into_tumour_vs_none(data_dir, cache):
    cfg = ExternalConfig(name="brain-mri-binary-253", subset_per_class=3,
                         prediction_map={"glioma": "yes", "meningioma": "yes",
                                         "pituitary": "yes", "notumor": "no"})
    ext = prepare_external(cfg, PRE, FOUR, str(data_dir))
    assert ext.classes == ["no", "yes"] and list(ext.fold) == [1, 1, 0, 1]
    assert sorted(ext.classes[s.label] for s in ext.samples) == ["no"] * 3 + ["yes"] * 3


@pytest.mark.parametrize("maps,message", [
    ({"label_map": {"astrocytoma": "glioma"}}, "label_map names \\['astrocytoma'\\]"),
    ({"prediction_map": {"tumour": "yes"}}, "prediction_map names \\['tumour'\\]"),
    ({}, "label\\(s\\) \\['no', 'yes'\\] match no class"),
])
def test_label_maps_that_do_not_fit_are_named(data_dir, cache, maps, message):
    cfg = ExternalConfig(name="brain-mri-binary-253", subset_per_class=1, **maps)
    with pytest.raises(DataError, match=message):
        prepare_external(cfg, PRE, FOUR, str(data_dir))


def test_cross_duplicates_by_bytes_and_by_look():
    a, b, c = "a" * 64, "0" * 64, "f" * 64
    near = "0" * 60 + "000f"  # 4 bits from b
    kinds, bits, index = cross_duplicates([("s1", a), ("s9", near), ("s8", c)],
                                          [("s1", a), ("s2", b)], threshold=4)
    assert kinds == ["exact", "near", ""] and list(bits[:2]) == [0, 4] and index[1] == 1


def test_training_copies_in_the_external_set_are_removed_and_counted(
        mlflow_store, data_dir, tmp_path, monkeypatch, weights_dir, cache):
    # a user's external set in the 3264 set's folder names: two of its own test images per
    # class, plus a byte copy and a resized PNG copy of a 7023 training image
    ext = tmp_path / "ext"
    source = data_dir / T3264 / "Testing"
    for folder in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"):
        (ext / folder).mkdir(parents=True)
        for f in sorted((source / folder).iterdir())[:2]:
            shutil.copy(f, ext / folder / f.name)
    train_image = data_dir / "brain-tumor-mri-7023" / "Training" / "glioma" / "Tr-glTr_0000.jpg"
    shutil.copy(train_image, ext / "glioma_tumor" / "copied.jpg")
    Image.open(train_image).resize((200, 200)).save(ext / "glioma_tumor" / "resized.png")
    external = {"name": "user-hospital", "root": str(ext), "alias": "hosp",
                "label_map": {f: c for f, c in zip(["glioma_tumor", "meningioma_tumor",
                                                    "no_tumor", "pituitary_tumor"], FOUR)}}
    suite = load_suite("smoke", {
        "experiment": "ext", "explain.methods": [], "augment": {}, "training.epochs": 1,
        "models": [{"name": "test_resnet"}], "strategies": ["frozen"],
        "preprocess.image_size": 32,
        "datasets": [{"name": "brain-tumor-mri-7023", "subset_per_class": 4,
                      "external": [external]}]})
    assert run_suite(suite, SuiteOptions(device="cpu", data_dir=str(data_dir))) == 0
    client = MlflowClient()
    exp = client.get_experiment_by_name("ext")
    runs = {r.data.tags["strategy"]: r for r in client.search_runs([exp.experiment_id],
                                                                   "tags.role = 'cell'")}
    assert runs["frozen"].data.tags["training_path"] == "feature_reuse"
    for run in runs.values():
        m = run.data.metrics
        assert (m["external_hosp_n"], m["external_hosp_n_exact_duplicates"],
                m["external_hosp_n_near_duplicates"], m["external_hosp_n_clean"]) == (10, 1, 1, 8)
        assert 0 <= m["external_clean_hosp_accuracy"] <= 1 and "external_hosp_kappa" in m
        # the cell's temperature applied before the classes fold; selective figures from it
        assert {"external_hosp_calibrated_ece", "external_hosp_brier",
                "external_clean_hosp_aurc", "external_clean_hosp_eaurc"} <= set(m)
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                   artifact_path="external/hosp/predictions.csv")
        frame = pd.read_csv(path, keep_default_na=False).set_index("file")
        assert frame.loc["glioma_tumor/copied.jpg", "duplicate"] == "exact"
        assert frame.loc["glioma_tumor/resized.png", "duplicate"] == "near"
        assert frame.loc["glioma_tumor/copied.jpg", "nearest_seen_file"].endswith(
            train_image.name)
        assert set(frame["true"]) == set(FOUR)
        files = {a.path for a in client.list_artifacts(run.info.run_id, "external/hosp")}
        assert {"external/hosp/confusion_matrix_clean.csv", "external/hosp/audit.json"} <= files
    # the report shows the external set in its own table, with the counts and both accuracies
    out = tmp_path / "report"
    path = tmp_path / "ext_suite.yaml"
    path.write_text(json.dumps(suite.model_dump(mode="json")))
    assert report(str(path), None, as_json=False, out=str(out)) == 0
    md = (out / "report.md").read_text()
    assert "## External test sets" in md
    row = next(line for line in md.splitlines() if "| hosp |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    m = runs["frozen"].data.metrics
    assert cells[2:5] == ["10", "2", "8"]  # images, copies of train/val, clean images
    assert float(cells[5]) == pytest.approx(m["external_hosp_accuracy"], abs=5e-4)
    assert float(cells[6]) == pytest.approx(m["external_clean_hosp_accuracy"], abs=5e-4)
