"""Suite `axes:`: any config value crossed with the matrix, validated like the suite itself."""
from __future__ import annotations

import pytest

from mribench.config.schema import SuiteError
from mribench.config.suite_file import parse_suite
from mribench.matrix import expand

BASE = {
    "name": "ax",
    "datasets": [{"name": "brain-mri-binary-253"}],
    "models": [{"name": "test_resnet"}],
    "strategies": ["scratch", {"name": "full"}],
    "seeds": [0, 1],
}


def test_two_axes_expand_to_the_product_with_distinct_run_keys():
    suite = parse_suite({**BASE, "axes": {"datasets[*].train_per_class": [10, 25, "all"],
                                          "preprocess.image_size": [64, 128]}})
    cells = expand(suite)
    assert len(cells) == 2 * 2 * 3 * 2  # strategies x seeds x sizes x image sizes
    assert len({c.run_key for c in cells}) == len(cells)
    assert {(c.dataset.train_per_class, c.preprocess.image_size) for c in cells} == {
        (n, s) for n in (10, 25, "all") for s in (64, 128)}
    cell = next(c for c in cells if c.dataset.train_per_class == 25
                and c.preprocess.image_size == 64)
    # the values label the cell: run name, tags (console and report) and the config key
    assert "train_per_class 25 / image_size 64" in cell.title
    tags = cell.tags()
    assert tags["axes"] == "train_per_class=25, image_size=64"
    assert tags["axis.train_per_class"] == "25" and tags["axis.image_size"] == "64"
    # seeds of one axis value share a configuration; different values do not
    same = {c.config_key for c in cells if c.dataset.train_per_class == 25
            and c.preprocess.image_size == 64 and c.strategy.name == "full"}
    assert len(same) == 1
    assert len({c.config_key for c in cells}) == 2 * 3 * 2


def test_a_suite_without_axes_keeps_its_run_keys():
    # the key this cell had before axes and train_per_class existed (commit 46082fa)
    suite = {"name": "m", "datasets": [{"name": "brain-mri-binary-253"}],
             "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0]}
    assert [c.run_key for c in expand(parse_suite(suite))] == ["1fe3ef554e5524de"]
    # and an axis value equal to the base setting is the same cell as the base suite's
    axis = expand(parse_suite({**suite, "axes": {"training.lr": [0.001, 0.01]}}))
    assert axis[0].run_key == "1fe3ef554e5524de" and axis[1].run_key != axis[0].run_key


def test_only_restricts_a_value_to_some_strategies():
    suite = parse_suite({**BASE, "axes": {"datasets[*].train_per_class": [
        10, {"value": "all", "only": {"strategy": ["scratch"]}}]}})
    cells = expand(suite)
    assert sorted((c.strategy.name, str(c.dataset.train_per_class)) for c in cells) == sorted(
        [(s, "10") for s in ("scratch", "full") for _ in (0, 1)] + [("scratch", "all")] * 2)


@pytest.mark.parametrize("axes, message", [
    # an unknown key is worded as in the suite's own blocks (config/problems.py)
    ({"training.lrr": [0.1]}, r"axes\.training\.lrr\[0\] = 0\.1: training\.lrr: unknown key; "
                              r"did you mean 'lr'\?"),
    ({"training.lr": [0.1, 20]}, r"axes\.training\.lr\[1\] = 20: training\.lr: .*less than or "
                                 r"equal to 10"),
    ({"datasets[*].train_per_class": [10, 0]},
     r"axes\.datasets\[\*\]\.train_per_class\[1\] = 0: datasets\[0\]\.train_per_class"),
    ({"datasets[2].train_per_class": [10]}, r"axes\.datasets\[2\]\.train_per_class.*no \[2\]"),
    ({"seeds": [1, 2]}, r"axes\.seeds: .*must start with one of"),
    ({"training.lr": [{"value": 0.1, "only": {"strategy": ["knn"]}}]},
     r"axes\.training\.lr\[0\]\.only\.strategy names \['knn'\]"),
])
def test_bad_axes_name_the_yaml_path(axes, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite({**BASE, "axes": axes}, "s.yaml")


def test_an_axis_a_model_override_shadows_is_refused():
    # models[0].training.lr wins over the suite-level value the axis writes: no new cells
    suite = parse_suite({**BASE, "models": [{"name": "test_resnet", "training": {"lr": 0.01}}],
                         "axes": {"training.lr": [0.001, 0.1]}})
    with pytest.raises(ValueError, match="an axis value that changes nothing"):
        expand(suite)


def test_an_axis_inside_a_datasets_unset_block_starts_from_the_suites_block():
    # a dataset without its own split or robustness block uses the suite's: an axis on a
    # setting inside it must not fall back to that block's defaults (official, all artefacts)
    suite = parse_suite({**BASE, "strategies": ["scratch"], "seeds": [0],
                         "split": {"protocol": "holdout", "test_fraction": 0.3},
                         "robustness": {"artefacts": ["noise"], "severities": [1, 2]},
                         "axes": {"datasets[*].split.val_fraction": [0.1, 0.2],
                                  "datasets[*].robustness.severities": [[1], [3]]}})
    cells = expand(suite)
    assert len(cells) == 4
    assert {(c.split.protocol, c.split.test_fraction) for c in cells} == {("holdout", 0.3)}
    assert {c.split.val_fraction for c in cells} == {0.1, 0.2}
    assert {tuple(c.robustness.artefacts) for c in cells} == {("noise",)}
    assert {tuple(c.robustness.severities) for c in cells} == {(1,), (3,)}


def test_a_suite_level_axis_reaches_a_dataset_axis_listed_before_it():
    suite = parse_suite({**BASE, "strategies": ["scratch"], "seeds": [0],
                         "axes": {"datasets[*].split.val_fraction": [0.1, 0.2],
                                  "split.protocol": ["holdout", "kfold"]}})
    assert sorted((c.split.protocol, c.split.val_fraction) for c in expand(suite)
                  if c.fold in (None, 0)) == [
        ("holdout", 0.1), ("holdout", 0.2), ("kfold", 0.1), ("kfold", 0.2)]


@pytest.mark.parametrize("value, message", [
    (True, "true is not a training size"), (False, "false is not a training size"),
    (10.0, "10.0 is neither N images per class"), (2.5, "2.5 is neither")])
def test_a_training_size_that_is_no_count_or_fraction_is_refused(value, message):
    # pydantic's lax int read both `true` and `1.0` as 1 image per class
    with pytest.raises(SuiteError, match=rf"s\.yaml: datasets\[0\]\.train_per_class: {message}"):
        parse_suite({**BASE, "datasets": [{"name": "brain-mri-binary-253",
                                           "train_per_class": value}]}, "s.yaml")


def test_the_fraction_one_is_the_whole_training_set():
    def cell(size):
        return expand(parse_suite({**BASE, "datasets": [
            {"name": "brain-mri-binary-253", "train_per_class": size}]}))[0]
    assert cell(1.0).dataset.train_per_class == "all"
    assert cell(1.0).run_key == cell("all").run_key
    assert cell(1).dataset.train_per_class == 1


def test_a_set_of_a_setting_an_axis_writes_is_refused_naming_both():
    data = {**BASE, "axes": {"datasets[*].train_per_class": [10, 25]}}
    with pytest.raises(SuiteError, match=r"--set datasets\.0\.train_per_class=5: the axis "
                                         r"axes\.datasets\[\*\]\.train_per_class sets"):
        parse_suite(data, "s.yaml", {"datasets.0.train_per_class": 5})
    # another setting of the same dataset is fine
    assert parse_suite(data, "s.yaml", {"datasets.0.near_bits": 8}).datasets[0].near_bits == 8


def test_set_of_an_axis_takes_its_whole_dotted_path_as_one_key():
    data = {**BASE, "axes": {"datasets[*].train_per_class": [10, 25],
                             "preprocess.image_size": [64, 128]}}
    suite = parse_suite(data, "s.yaml", {"axes.datasets[*].train_per_class": [5],
                                         "axes.preprocess.image_size": None})
    assert suite.axes == {"datasets[*].train_per_class": [5]}
    assert len(expand(suite)) == 2 * 2  # strategies x seeds x one size


def test_an_axis_that_reaches_no_setting_is_refused():
    with pytest.raises(SuiteError, match=r"s\.yaml: axes\.datasets\[\*\]\.external\[\*\]\.name: "
                                         r"matches no setting"):
        parse_suite({**BASE, "axes": {"datasets[*].external[*].name": ["x"]}}, "s.yaml")


@pytest.mark.parametrize("axes, cause", [
    ({"strategies[1].k": [3, 5]}, r"axes\.strategies\[1\]\.k sets one of the strategies only.*"
                                  r"`only: \{strategy: \[NAME\]\}`"),
    ({"datasets[0].near_bits": [8, 12], "datasets[1].near_bits": [8, 12]},
     r"axes\.datasets\[0\]\.near_bits sets one of the datasets only.*datasets\[\*\]\.SETTING")])
def test_an_axis_on_one_list_item_names_why_cells_repeat(axes, cause):
    suite = parse_suite({**BASE, "datasets": [{"name": "brain-mri-binary-253"},
                                              {"name": "brain-tumor-mri-7023-sample"}],
                         "strategies": ["scratch", {"name": "knn"}], "seeds": [0],
                         "axes": axes})
    with pytest.raises(ValueError, match=rf"the same cell more than once \({cause}"):
        expand(suite)


def test_axis_labels_are_valid_mlflow_tag_names():
    # two axes on one setting's name are labelled by their paths: MLflow refuses `[`, `]`, `*`
    suite = parse_suite({**BASE, "axes": {"datasets[0].split.val_fraction": [0.1, 0.2],
                                          "datasets[*].split.folds": [3],
                                          "split.val_fraction": [0.3], "split.folds": [4]}})
    tags = expand(suite)[0].tags()
    assert {"axis.datasets.0.split.val_fraction", "axis.datasets.split.folds",
            "axis.split.val_fraction", "axis.split.folds"} <= set(tags)
    assert not any(set("[]*") & set(name) for name in tags)
