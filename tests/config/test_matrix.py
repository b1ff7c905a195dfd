"""Matrix expansion and run_key stability."""
from __future__ import annotations

import pytest

from mribench.config.suite_file import parse_suite
from mribench.matrix import expand, flatten

SUITE = {
    "name": "m",
    "datasets": [{"name": "brain-mri-binary-253"}],
    "models": [{"name": "test_resnet"}, {"name": "test_efficientnet"}],
    "strategies": ["scratch", {"name": "partial", "blocks": 2}],
    "seeds": [0, 1, 2],
}


def test_cells_are_the_cross_product():
    cells = expand(parse_suite(SUITE))
    assert len(cells) == 2 * 2 * 3
    assert {(c.model.name, c.strategy.name, c.seed) for c in cells} == {
        (m, s, seed) for m in ("test_resnet", "test_efficientnet")
        for s in ("scratch", "partial") for seed in (0, 1, 2)}
    assert len({c.run_key for c in cells}) == len(cells)


def test_kfold_makes_one_cell_per_fold():
    cells = expand(parse_suite({**SUITE, "split": {"protocol": "kfold", "folds": 4}}))
    assert len(cells) == 12 * 4 and {c.fold for c in cells} == {0, 1, 2, 3}


def test_run_key_is_stable_and_ignores_display_labels():
    a = expand(parse_suite(SUITE))
    b = expand(parse_suite({**SUITE, "strategies": [{"name": "scratch", "label": "non_tf"},
                                                    {"name": "partial", "blocks": 2}]}))
    assert [c.run_key for c in a] == [c.run_key for c in b]
    assert a[0].run_key == expand(parse_suite(SUITE))[0].run_key


def test_run_key_changes_with_anything_that_changes_results():
    base = {c.run_key for c in expand(parse_suite(SUITE))}
    for change in ({"training": {"lr": 0.01}}, {"preprocess": {"image_size": 64}},
                   {"augment": {"hflip": True}}):
        assert not base & {c.run_key for c in expand(parse_suite({**SUITE, **change}))}


def test_per_model_override_changes_only_that_models_cells():
    changed = {**SUITE, "models": [{"name": "test_resnet", "training": {"epochs": 3}},
                                   {"name": "test_efficientnet"}]}
    old = {(c.model.name, c.strategy.name, c.seed): c.run_key for c in expand(parse_suite(SUITE))}
    new = {(c.model.name, c.strategy.name, c.seed): c.run_key
           for c in expand(parse_suite(changed))}
    assert all((old[k] == new[k]) == (k[0] == "test_efficientnet") for k in old)


def test_duplicate_cells_are_rejected():
    with pytest.raises(ValueError, match="more than once"):
        expand(parse_suite({**SUITE, "strategies": ["scratch", "scratch"]}))


def test_flatten_makes_dotted_params():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": []}) == {"a.b": 1, "a.c.d": 2, "e": []}


def test_model_can_be_limited_to_some_strategies():
    suite = parse_suite({**SUITE, "models": [
        {"name": "test_resnet", "strategies": ["scratch"]}, {"name": "test_efficientnet"}]})
    combos = {(c.model.name, c.strategy.name) for c in expand(suite)}
    assert combos == {("test_resnet", "scratch"), ("test_efficientnet", "scratch"),
                      ("test_efficientnet", "partial")}


def test_model_strategies_must_be_declared():
    from mribench.config.schema import SuiteError

    with pytest.raises(SuiteError, match="thaw"):
        parse_suite({**SUITE, "models": [{"name": "test_resnet", "strategies": ["thaw"]}]})


def test_loader_workers_do_not_change_a_cells_identity():
    a = expand(parse_suite(SUITE))
    b = expand(parse_suite({**SUITE, "training": {"num_workers": 4}}))
    assert [c.run_key for c in a] == [c.run_key for c in b]


def test_a_dataset_can_bring_its_own_split_and_a_model_its_own_image_size():
    suite = parse_suite({**SUITE, "seeds": [0], "datasets": [
        {"name": "brain-tumor-mri-7023"},
        {"name": "brain-mri-binary-253", "split": {"protocol": "kfold", "folds": 3}}],
        "models": [{"name": "test_resnet", "preprocess": {"image_size": 64}},
                   {"name": "test_efficientnet"}]})
    cells = expand(suite)
    folds = {(c.dataset.name, c.fold) for c in cells}
    assert folds == {("brain-tumor-mri-7023", None)} | {("brain-mri-binary-253", f)
                                                        for f in range(3)}
    assert all(c.split.protocol == ("kfold" if c.fold is not None else "official") for c in cells)
    assert {(c.model.name, c.preprocess.image_size) for c in cells} == {("test_resnet", 64),
                                                                        ("test_efficientnet", 224)}
    assert "preprocess" not in cells[0].resolved()["model"]  # merged, not logged twice
