"""One config path language: `axes:` keys and `--set` read the same paths (`datasets[0].x`,
`datasets.0.x`, `datasets[*].x`), write them the same way, and a key is named the same way in
an error whether it came from the file, an axis or the command line."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from mribench.config import paths
from mribench.config.schema import SuiteError
from mribench.config.suite_file import parse_suite
from mribench.matrix import expand

BASE = {"name": "p", "datasets": [{"name": "brain-mri-binary-253"}],
        "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0]}


@pytest.mark.parametrize("path, steps", [
    ("training.lr", ["training", "lr"]),
    ("datasets[*].train_per_class", ["datasets", "*", "train_per_class"]),
    ("models[0].name", ["models", 0, "name"]),
    ("models.0.name", ["models", "0", "name"]),
    ("datasets[0].label_map.no-tumour", ["datasets", 0, "label_map", "no-tumour"]),
])
def test_both_syntaxes_parse(path, steps):
    assert paths.parse(path) == steps


@pytest.mark.parametrize("bad", ["a..b", "a[x].b", "[0].a", "a."])
def test_a_malformed_path_is_named(bad):
    with pytest.raises(paths.PathError, match="is not `key`, `key\\[i\\]` or `key\\[\\*\\]`"):
        paths.parse(bad)


def test_set_reads_the_axis_syntax_too():
    dotted = parse_suite(BASE, "s.yaml", {"datasets.0.train_per_class": 10})
    bracketed = parse_suite(BASE, "s.yaml", {"datasets[0].train_per_class": 10})
    every = parse_suite(BASE, "s.yaml", {"datasets[*].train_per_class": 10})
    assert dotted == bracketed == every and dotted.datasets[0].train_per_class == 10
    assert [c.run_key for c in expand(dotted)] == [c.run_key for c in expand(bracketed)]


def test_set_inside_a_dataset_block_starts_from_the_suites_block_like_an_axis():
    # the dataset has no split of its own: its split is the suite's, so changing one setting
    # of it must keep the suite's k-fold protocol (as the axis of the same path does)
    suite = {**BASE, "split": {"protocol": "kfold", "folds": 5}}
    by_set = parse_suite(suite, "s.yaml", {"datasets.0.split.folds": 3})
    assert (by_set.datasets[0].split.protocol, by_set.datasets[0].split.folds) == ("kfold", 3)
    by_axis = parse_suite({**suite, "axes": {"datasets[*].split.folds": [3]}}, "s.yaml")
    assert [c.run_key for c in expand(by_set)] == [c.run_key for c in expand(by_axis)]


@pytest.mark.parametrize("override, said", [
    ({"datasets.3.root": "/x"}, "datasets has 1 item(s), no [3]"),
    ({"datasets.root": "/x"}, "datasets is a list: name its items by index (datasets[0].root)"),
    ({"training[0]": 1}, "training is not a list"),
    ({"name.x": 1}, "name is not a block of settings"),
])
def test_set_to_no_such_place_says_why(override, said):
    with pytest.raises(SuiteError, match="no such place in the suite") as err:
        parse_suite(BASE, "s.yaml", override)
    assert said in str(err.value)


def test_a_misspelt_key_reads_the_same_from_file_set_and_axis():
    line = "training.lrr: unknown key; did you mean 'lr'?"
    messages = []
    for data, overrides in (({**BASE, "training": {"lrr": 0.1}}, None),
                            (BASE, {"training.lrr": 0.1}),
                            ({**BASE, "axes": {"training.lrr": [0.1]}}, None)):
        with pytest.raises(SuiteError) as err:
            parse_suite(data, "s.yaml", overrides)
        messages.append(str(err.value))
    assert all(line in m for m in messages), messages


def test_the_command_reads_both_syntaxes(tmp_path):
    exe = shutil.which("mribench")
    assert exe, "the console script is installed"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(BASE))
    out = {}
    for path in ("datasets.0.train_per_class", "datasets[0].train_per_class"):
        done = subprocess.run([exe, "suite", "s.yaml", "--dry-run", "--json",
                               "--set", f"{path}=7"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        out[path] = json.loads(done.stdout)["rows"]  # the cells and their run_keys
    assert out["datasets.0.train_per_class"] == out["datasets[0].train_per_class"]
    bad = subprocess.run([exe, "suite", "s.yaml", "--dry-run", "--set", "datasets.2.root=/x"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "datasets has 1 item(s), no [2]" in bad.stderr
