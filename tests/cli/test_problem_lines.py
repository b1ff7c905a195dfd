"""Bad values read as one line per problem (YAML path, value, what is allowed, did you mean),
and YAML alias bombs are refused at once with bounded memory, wherever they sit."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from mribench.cli.main import main
from mribench.config import strict_yaml

BASE = {"name": "t", "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
        "models": [{"name": "test_resnet"}], "strategies": ["scratch"]}


def errors(argv: list[str], capsys) -> list[str]:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), captured.err
    assert "Traceback" not in captured.err and "validation error" not in captured.err
    assert "For further information" not in captured.err and "[type=" not in captured.err
    return [line.removeprefix("error: ") for line in lines]


def suite_file(tmp_path, **changes) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return str(path)


def test_a_value_that_fits_no_member_of_a_union_is_one_line(tmp_path, capsys):
    path = suite_file(tmp_path, datasets=[{"name": "brain-tumor-mri-7023-sample",
                                           "train_per_class": 0}])
    assert errors(["suite", path, "--dry-run"], capsys) == [
        f"{path}: datasets[0].train_per_class: must be greater than 0 or 'all' (got 0)"]


def test_misspelt_keys_and_names_get_did_you_mean_one_line_each(tmp_path, capsys):
    path = suite_file(tmp_path, traning={"epochs": 1}, strategies=["scratchh"],
                      models=[{"name": "test_resnt"}], epochs=3)
    lines = errors(["suite", path, "--dry-run"], capsys)
    assert len(lines) == 4, lines
    assert f"{path}: traning: unknown key; did you mean 'training'?" in lines
    assert f"{path}: epochs: unknown key; did you mean 'training.epochs'?" in lines
    assert any(line.startswith(f"{path}: strategies[0].name: unknown strategy 'scratchh'")
               and "did you mean 'scratch'?" in line for line in lines)
    assert any(line.startswith(f"{path}: models[0].name: unknown model 'test_resnt'")
               and line.endswith("did you mean 'test_resnet'?") for line in lines)


def test_evaluate_flags_are_named_as_typed(capsys):
    model = "0" * 32
    (line,) = errors(["evaluate", model, "--dataset", "brain-tumor-mri-7023-sample",
                      "--near-bits", "999"], capsys)
    assert line == "evaluate: --near-bits: must be less than or equal to 256 (got 999)"
    (line,) = errors(["evaluate", model, "--dataset", "brain-tumor-mri-7023-smaple"], capsys)
    assert line.startswith("evaluate: unknown dataset 'brain-tumor-mri-7023-smaple'")
    assert line.endswith("did you mean 'brain-tumor-mri-7023-sample'?")


def _levels(first: str) -> list[str]:
    """`&a0 [x x10]`, `&a1 [*a0 x10]`, ... `&a9 [*a8 x10]`: 10^10 values in ten entries."""
    return [f"&a{i} [" + ", ".join([first if i == 0 else f"*a{i - 1}"] * 10) + "]"
            for i in range(10)]


@pytest.mark.parametrize("where", ["axes", "unknown-key", "set"])
def test_a_billion_laughs_is_refused_at_once_with_bounded_memory(tmp_path, where):
    """10^10 values in 10 lines: as an axis's values (which validation would expand), under an
    unknown key, and as a --set value; refused by a real process in one line, exit 2."""
    text = yaml.safe_dump(BASE)
    args = []
    if where == "axes":
        text += "axes:\n  training.lr:\n" + "".join(f"    - {v}\n" for v in _levels("0.1"))
    elif where == "unknown-key":
        text += "lols:\n" + "".join(f"  a{i}: {v}\n" for i, v in enumerate(_levels("lol")))
    else:
        args = ["--set", "training.lr=[" + ", ".join(_levels("0.1")) + "]"]
    (tmp_path / "bomb.yaml").write_text(text)
    t0 = time.perf_counter()
    try:
        strict_yaml.load(text if where != "set" else args[1].partition("=")[2])
    except yaml.YAMLError as err:
        assert "over 100000 values" in str(err)
    else:
        raise AssertionError("the bomb was loaded")
    took = time.perf_counter() - t0
    print(f"{where}: refused in {took * 1000:.1f} ms in-process")
    assert took < 1.0
    # the command in a fresh interpreter that reports its own peak memory (VmHWM: the peak of
    # this process image, not of the pytest process it was forked from)
    done = subprocess.run([sys.executable, "-c", PEAK, "suite", "bomb.yaml", "--dry-run", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    *said, peak = done.stderr.strip().splitlines()
    peak_mib = int(peak.split()[1]) / 1024
    print(f"{where}: the command refused it, peak RSS {peak_mib:.0f} MiB")
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = [line for line in said if line.strip()]
    assert "over 100000 values" in line and "Traceback" not in done.stderr
    assert peak_mib < 300, f"{peak_mib:.0f} MiB"  # the interpreter and its imports (37 MiB)


PEAK = """
import sys
from mribench.cli.main import main
code = main(sys.argv[1:])
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].strip(),
      file=sys.stderr)
sys.exit(code)
"""


def test_output_paths_of_data_and_models_commands_are_checked_before_work(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    image = tmp_path / "scan.png"
    os.mkfifo(image)  # named like an image, never opened
    cases = [
        (["data", "audit", "brain-tumor-mri-7023-sample", "--csv", "a-file/groups.csv"],
         "--csv a-file/groups.csv: a-file is a file, so nothing can be written under it"),
        (["models", "fetch", "test_resnet", "--dir", "a-file"],
         "--dir a-file: is a file, not a folder; name a folder"),
        (["data", "artefacts", str(image), "--out", "a-file/grid.png"],
         "--out a-file/grid.png: a-file is a file, so nothing can be written under it"),
        (["data", "artefacts", str(image), "--out", "grid.png"], f"{image}: not a regular file"),
    ]
    for argv, said in cases:
        assert errors(argv, capsys) == [said]
