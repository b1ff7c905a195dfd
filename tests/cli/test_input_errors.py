"""Every input fault ends with one clear line (file, key or value, and what to do), exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from mribench import tracking
from mribench.cli.main import main
from mribench.config.schema import SUITES_DIR

SMOKE = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], captured.err  # one line, last (after progress, if any)
    progress = ("checking dataset", "split ", "warning: ")
    assert all(line.startswith(progress) for line in lines[:-1]), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[-1]


@pytest.fixture
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))


def test_unwritable_tracking_store(tmp_path, data_dir, _cache, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # MLflow makes a `file:` artifact folder in the working directory
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    tracking.setup("made-before")  # an existing store, then opened read-only (works as root)
    capsys.readouterr()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///file:{db}?mode=ro&uri=true")
    line = one_line_error(["suite", "smoke"], capsys)
    assert f"tracking store sqlite:///file:{db}" in line and "readonly database" in line
    assert "MLFLOW_TRACKING_URI" in line
    (tmp_path / "afile").write_text("")  # a store whose folder is a file
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'afile' / 'mlflow.db'}")
    assert "afile" in one_line_error(["suite", "smoke"], capsys)


def test_credentials_in_the_tracking_uri_are_never_printed(data_dir, _cache, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret-pw@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    for argv in (["suite", "smoke"], ["report", "smoke"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "s3cret-pw" not in captured.err + captured.out
        assert "http://alice:***@127.0.0.1:9" in captured.err


def test_bad_offline_setting(monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_OFFLINE", "true")
    line = one_line_error(["suite", "smoke", "--dry-run"], capsys)
    assert "BENCHMARK_OFFLINE='true'" in line and "0 or 1" in line
    # --help works whatever the environment holds (a fresh process: nothing imported yet)
    import os

    env = {**os.environ, "BENCHMARK_OFFLINE": "true"}
    for argv in (["--help"], ["data", "--help"], ["suite", "--help"]):
        done = subprocess.run([sys.executable, "-m", "mribench", *argv], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "usage:" in done.stdout, done.stderr


def test_experiment_name_is_bounded_like_mlflow(capsys):
    line = one_line_error(["suite", "smoke", "--dry-run", "--experiment", "x" * 501], capsys)
    assert "experiment: String should have at most 500 characters" in line


def test_derived_experiment_name_is_bounded_too(tmp_path, capsys):
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump({**SMOKE, "name": "n" * 495, "experiment": None}))
    line = one_line_error(["suite", str(path), "--dry-run"], capsys)
    assert "long.yaml: name: String should have at most 490 characters" in line


def test_non_utf8_suite_file_is_named(tmp_path, capsys):
    path = tmp_path / "latin.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    line = one_line_error(["suite", str(path), "--dry-run"], capsys)
    assert f"{path}: not UTF-8 text (byte 9 is b'\\xe9')" in line


def test_duplicate_yaml_keys_name_both_lines(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    text = yaml.safe_dump(SMOKE, sort_keys=False)
    path.write_text(text + "training:\n  epochs: 99\n")
    first = text.splitlines().index("training:") + 1
    last = len(text.splitlines()) + 1
    line = one_line_error(["suite", str(path), "--dry-run"], capsys)
    assert f"duplicate key 'training' on lines {first} and {last}" in line and "dup.yaml" in line
    # in a --set value too
    assert "duplicate key 'a'" in one_line_error(
        ["suite", "smoke", "--dry-run", "--set", "training={a: 1, a: 2}"], capsys)


def test_markup_in_names_is_printed_as_written(tmp_path, data_dir, mlflow_store, _cache, capsys):
    """A suite, dataset or experiment name holding `[/x]` broke rich markup; `[old]` vanished."""
    root = data_dir / "brain-tumor-mri-7023"
    manifest = tmp_path / "list.csv"
    rows = ["path,label,split"] + [
        f"{split}/{cls}/{p.name},{cls},{split.lower()}"
        for split in ("Training", "Testing") for cls in ("glioma", "notumor")
        for p in sorted((root / split / cls).iterdir())[:6]]
    manifest.write_text("\n".join(rows) + "\n")
    suite = {**SMOKE, "name": "tiny [/x] suite", "experiment": "exp [old] [/x]",
             "models": [{"name": "test_resnet"}], "explain": {"methods": []},
             "datasets": [{"name": "mri [old] [/x]", "manifest": str(manifest),
                           "root": str(root)}]}
    path = tmp_path / "markup.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["suite", str(path), "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "suite tiny [/x] suite:" in err and "experiment 'exp [old] [/x]'" in err
    assert "checking dataset mri [old] [/x]" in err
    assert "mri [old] [/x]" in captured.out  # the result table's title


BUG = """
import sys
from mribench.config import suite_file

def load_suite(*args, **kwargs):
    raise {error}("an invariant inside the package broke")

suite_file.load_suite = load_suite
from mribench.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("error, code", [("ValueError", 1), ("UserError", 2)])
def test_a_valueerror_from_inside_the_package_is_a_bug_not_bad_input(tmp_path, error, code):
    """Only a UserError (or a config built from flags) is bad input, exit 2 in one line; a bare
    ValueError raised inside the package is a bug: its traceback shows and the exit code is 1."""
    source = BUG.format(error=error)
    if error == "UserError":
        source = "from mribench.errors import UserError\n" + source
    done = subprocess.run([sys.executable, "-c", source, "suite", "smoke", "--dry-run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    if error == "ValueError":
        assert "Traceback" in done.stderr and "ValueError: an invariant" in done.stderr
        assert "error: an invariant" not in done.stderr
    else:
        assert done.stderr.strip() == "error: an invariant inside the package broke"


def test_cuda_asked_for_where_there_is_none_is_bad_input(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = one_line_error(["suite", "smoke", "--dry-run", "--device", "cuda"], capsys)
    assert line == "error: --device cuda: device 'cuda' requested but CUDA is not available here"
