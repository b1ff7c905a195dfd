"""The command a stopped suite tells the user to repeat is the one they typed (under `mlflow run`
too, with no empty options), and `mribench --version` answers."""
from __future__ import annotations

import re
import shlex

import pytest
import yaml

from mribench import __version__
from mribench.cli.main import main
from mribench.run import resume_hint
from real_data import ROOT


def _mlproject_argv(**params) -> list[str]:
    """argv as MLflow Projects starts the suite entry point: the MLproject's command with every
    parameter filled (defaults for the ones not given), `python -m mribench` as argv[0]."""
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    entry = project["entry_points"]["suite"]
    values = {name: str(spec.get("default", "")) for name, spec in entry["parameters"].items()}
    values.update(params)
    command = entry["command"].replace("PYTHONPATH=benchmark python -m mribench", "")
    filled = command.format(**{k: shlex.quote(v) for k, v in values.items()})
    return ["/x/mribench/__main__.py", *shlex.split(filled)]


def test_under_mlflow_run_the_hint_is_the_mlflow_run_command(monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)
    argv = _mlproject_argv(suite="four_class", epochs="3", data_dir="/data")
    assert "''" in shlex.join(argv)  # MLflow passes the unset parameters as empty options
    hint = resume_hint.resume_command("four_class", argv)
    assert hint == "mlflow run . -e suite -P suite=four_class -P epochs=3 -P data_dir=/data"
    assert resume_hint.resume_command("smoke", _mlproject_argv()) == "mlflow run . -e suite"


def test_the_mlproject_parameters_are_the_ones_the_hint_knows():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    for entry, options in resume_hint.MLPROJECT.items():
        declared = project["entry_points"][entry]
        for option, (name, default) in options.items():
            assert f"{option} {{{name}}}" in declared["command"]
            assert str(declared["parameters"][name].get("default")) == str(default)


def test_outside_mlflow_the_hint_repeats_the_command_without_empty_options(monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    argv = _mlproject_argv(suite="smoke")  # `python -m mribench ...` by hand, same options
    hint = resume_hint.resume_command("smoke", argv)
    assert hint.startswith("mribench suite smoke --device auto") and "''" not in hint
    assert not re.search(r"--(epochs|data-dir|experiment|address)\b", hint)
    assert resume_hint.resume_command("x", ["/usr/bin/mribench", "suite", "x", "--epochs=",
                                            "--force", "true"]) == \
        "mribench suite x --force true"


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"mribench {__version__}"
