"""The CAM layer a suite asks for (suite-wide or per model) is the one Grad-CAM explains."""
import pytest
from mlflow.tracking import MlflowClient

from mribench.config.schema import ModelConfig, StrategyConfig, SuiteError
from mribench.config.suite_file import load_suite
from mribench.matrix import expand
from mribench.models.build import build
from mribench.models.layers import block_sides
from mribench.run.suite import SuiteOptions, run_suite

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**explain):
    return {"experiment": "layers", "training.epochs": 1, "seeds": [0],
            "datasets": [{"name": "brain-tumor-mri-7023", "subset_per_class": 3}],
            "explain": {"methods": ["gradcam", "layercam"], "per_class": 1,
                        "faithfulness": False, "randomisation": "none", **explain}}


def test_per_model_override_lands_in_the_cell_and_its_run_key():
    suite = load_suite("smoke", tiny() | {"models": [
        {"name": "test_efficientnet"},
        {"name": "test_resnet", "explain": {"gradcam_layer": "layer3"}}]})
    by_model = {c.model.name: c for c in expand(suite)}
    assert by_model["test_efficientnet"].explain.gradcam_layer == "default"
    assert by_model["test_resnet"].explain.gradcam_layer == "layer3"
    assert by_model["test_resnet"].resolved()["explain"]["gradcam_layer"] == "layer3"
    assert "explain" not in by_model["test_resnet"].resolved()["model"]  # merged, not twice
    plain = load_suite("smoke", tiny() | {"models": [{"name": "test_resnet"}]})
    assert expand(plain)[0].run_key != by_model["test_resnet"].run_key


@pytest.mark.parametrize("models, message", [
    ([{"name": "test_resnet", "explain": {"lime_samples": "5"}}], "may override only"),
    ([{"name": "test_resnet", "explain": {"gradcam_layer": "layer3; rm"}}], "gradcam_layer"),
])
def test_bad_overrides_name_the_key(models, message):
    with pytest.raises(SuiteError, match=message) as err:
        load_suite("smoke", tiny() | {"models": models})
    assert "models[0].explain" in str(err.value)


def test_stride_picks_the_last_block_that_keeps_the_resolution():
    for name in ("test_resnet", "test_efficientnet"):
        built = build(ModelConfig(name=name), StrategyConfig(name="scratch"), 4, 3, 64)
        sides = block_sides(built)
        for stride in (4, 8, 16):
            chosen, _ = built.explain_layer(f"stride:{stride}")
            names = [n for n, _ in sides]
            side = dict(sides)[chosen]
            assert side * stride >= 64
            assert all(s * stride < 64 for _, s in sides[names.index(chosen) + 1:])
        assert built.explain_layer("default")[0] == built.spec.gradcam


def test_override_reaches_gradcam_in_a_real_cell(mlflow_store, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", tiny(layercam_layer="stride:4") | {"models": [
        {"name": "test_efficientnet"},
        {"name": "test_efficientnet", "label": "fine", "explain": {"gradcam_layer": "blocks.1"}}]})
    assert run_suite(suite, SuiteOptions(data_dir=str(data_dir))) == 0
    client = MlflowClient(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("layers").experiment_id],
                              "tags.role = 'cell'")
    tags = {r.data.tags["model"]: r.data.tags for r in runs}
    metrics = {r.data.metrics.get("gradcam_map_side"): r.data.tags["model"] for r in runs}
    # 48 px: the last stage is 2x2, blocks.1 (stride 4) 12x12
    assert tags["test_efficientnet"]["explain_layer_gradcam"] == "bn2 (2x2)"
    assert tags["fine"]["explain_layer_gradcam"] == "blocks.1 (12x12)"
    assert metrics == {2.0: "test_efficientnet", 12.0: "fine"}
    assert tags["fine"]["explain_layer_layercam"] == "blocks.1 (12x12)"  # stride:4 here too


def test_unknown_layer_stops_the_suite_before_training(mlflow_store, data_dir, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = load_suite("smoke", tiny() | {"models": [
        {"name": "test_resnet", "explain": {"gradcam_layer": "layer5"}}]})
    with pytest.raises(ValueError, match=r"model 'test_resnet'.*'layer5'.*layer4"):
        run_suite(suite, SuiteOptions(data_dir=str(data_dir)))
    assert MlflowClient(mlflow_store).get_experiment_by_name("layers") is None  # nothing logged
