"""Suite schema: bad suites fail before anything runs, naming the YAML path and what was expected."""
from __future__ import annotations

import pytest
import yaml

from mribench.config.schema import SUITES_DIR, SuiteError
from mribench.config.suite_file import load_suite, parse_suite

BASE = {
    "name": "t",
    "datasets": [{"name": "brain-mri-binary-253"}],
    "models": [{"name": "test_resnet"}],
    "strategies": ["scratch"],
}


def bad(**changes) -> str:
    with pytest.raises(SuiteError) as err:
        parse_suite({**BASE, **changes}, "suite.yaml")
    return str(err.value)


def test_minimal_suite_gets_defaults():
    suite = parse_suite(BASE)
    assert suite.training.epochs == 10 and suite.seeds == [0]
    assert suite.strategies[0].name == "scratch"
    assert suite.experiment_name == "benchmark-t"


def test_unknown_top_level_key_is_named():
    msg = bad(epochs=3)
    assert msg == "suite.yaml: epochs: unknown key; did you mean 'training.epochs'?"


def test_unknown_nested_key_has_yaml_path():
    msg = bad(models=[{"name": "test_resnet"}, {"name": "test_resnet", "head": {"hiden": 3}}])
    assert "models[1].head.hiden" in msg


def test_unknown_model_lists_registered_ones():
    msg = bad(models=[{"name": "resnet9000"}])
    assert "models[0].name" in msg and "resnet9000" in msg and "test_resnet" in msg


def test_unknown_strategy_and_dataset():
    assert "strategies[0].name" in bad(strategies=["thaw"])
    msg = bad(datasets=[{"name": "my-scans"}])
    assert "datasets[0]" in msg and "my-scans" in msg and "root" in msg


def test_impossible_values():
    assert "training.epochs" in bad(training={"epochs": -1})
    assert "greater than 0" in bad(training={"epochs": 0})
    assert "models" in bad(models=[])
    assert "split.val_fraction" in bad(split={"val_fraction": 1.5})
    assert "preprocess.channels" in bad(preprocess={"channels": 2})


def test_wrong_type_reports_value():
    msg = bad(training={"batch_size": "big"})
    assert "training.batch_size" in msg and "'big'" in msg


def test_per_model_training_overrides_are_checked_and_merged():
    suite = parse_suite({**BASE, "models": [{"name": "test_resnet", "training": {"lr": 0.1}}]})
    assert suite.training_for(suite.models[0]).lr == 0.1
    assert suite.training_for(suite.models[0]).epochs == suite.training.epochs
    assert "models[0].training" in bad(models=[{"name": "test_resnet", "training": {"lr": -1}}])


def test_overrides_apply_dotted_keys():
    suite = parse_suite(BASE, overrides={"training.epochs": 3, "preprocess.image_size": 32})
    assert suite.training.epochs == 3 and suite.preprocess.image_size == 32


def test_bare_name_resolves_under_suites_and_missing_suite_lists_them():
    assert load_suite("smoke").name == "smoke"
    with pytest.raises(SuiteError, match="smoke"):
        load_suite("no-such-suite")


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="broken.yaml"):
        load_suite(path)


@pytest.mark.parametrize("path", sorted(SUITES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_suite_is_valid(path):
    suite = load_suite(path)
    assert suite.name == path.stem, "a suite's name matches its file name"
    assert yaml.safe_load(path.read_text())


def test_overrides_reach_list_items_and_bad_places_are_named():
    suite = parse_suite(BASE, overrides={"datasets.0.subset_per_class": 3})
    assert suite.datasets[0].subset_per_class == 3
    with pytest.raises(SuiteError, match="datasets.5.root"):
        parse_suite(BASE, overrides={"datasets.5.root": "/x"})


def test_batch_of_one_is_refused_up_front():
    assert "training.batch_size" in bad(training={"batch_size": 1})


def test_set_null_sets_null_as_the_readme_examples_say():
    from mribench.cli.main import build_parser
    from mribench.cli.run import _overrides

    def loaded(*sets: str):
        args = build_parser().parse_args(["suite", "smoke", *[f"--set={s}" for s in sets]])
        return load_suite("smoke", _overrides(args))

    assert loaded().training.max_loss == 100 and loaded().datasets[0].fallback is not None
    suite = loaded("training.max_loss=null", "datasets.0.fallback=null")
    assert suite.training.max_loss is None  # non-finite losses only
    assert suite.datasets[0].fallback is None  # the full set is required
