"""The front door as a user meets it: our own package name, a CLI that starts fast, results on
stdout, and errors that say everything at once."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import mribench
from mribench.cli.main import main
from mribench.config.suite_file import load_suite
from mribench.matrix import expand

OURS = "mribench"


def _top_levels(dist: metadata.Distribution) -> set[str]:
    declared = dist.read_text("top_level.txt")
    if declared:
        return {line.strip() for line in declared.splitlines() if line.strip()}
    # wheels without top_level.txt: the first path component of every installed file
    return {Path(str(f)).parts[0].removesuffix(".py") for f in dist.files or []
            if not str(f).startswith("..") and ".dist-info" not in str(f)}


def test_no_other_installed_distribution_ships_our_package_name():
    owners = sorted({d.metadata["Name"] for d in metadata.distributions()
                     if OURS in _top_levels(d)} - {"brain-mri-benchmark"})
    assert owners == [], f"{owners} also install a top-level {OURS!r}"
    # why we moved: lime installs a top-level `benchmark` package of its own
    lime = metadata.distribution("lime")
    assert "benchmark" in _top_levels(lime) or any("benchmark/" in str(f) for f in lime.files)


def test_the_package_imported_is_the_installed_one_not_a_stray_folder():
    assert Path(mribench.__file__).parent.name == OURS
    assert hasattr(mribench, "__version__")


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["suite", "--help"], ["suite", "no-such-suite"],
                                  ["suite", "smoke", "--set", "training.epochs"]])
def test_help_and_input_errors_do_not_import_torch(argv, tmp_path):
    code = ("import sys\nfrom mribench.cli.main import main\n"
            f"try:\n    code = main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code, file=sys.stderr)")
    out = _run_python(code, tmp_path)
    assert out.stderr.strip().splitlines()[-1].split()[0] == "NO-TORCH", out.stderr[-500:]
    assert out.stderr.strip().splitlines()[-1].split()[1] in ("0", "2")


def test_results_go_to_stdout_and_tables_are_not_cut_when_piped(capsys):
    assert main(["suite", "four_class", "--dry-run", "--no-estimate"]) == 0  # no calibration
    out, err = capsys.readouterr()
    assert "efficientnet_lite0" in out and "efficientnet_b0" in out  # no "efficien…"
    assert "…" not in out
    assert main(["suite", "smoke", "--dry-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["model"] for r in rows] == ["test_resnet", "test_efficientnet"]


def test_an_explicit_data_dir_that_does_not_exist_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path))  # a valid fallback must not mask it
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere"
    assert main(["suite", "smoke", "--data-dir", str(missing)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--data-dir {missing}: no such folder" in err
    assert not (tmp_path / "mlflow.db").exists()  # nothing was logged


def test_every_missing_weight_file_is_named_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    monkeypatch.delenv("BENCHMARK_WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "three.yaml"
    suite.write_text("name: three\ndatasets: [{name: brain-tumor-mri-7023}]\n"
                     "models: [{name: densenet121}, {name: resnet50}, {name: vgg16}]\n"
                     "strategies: [frozen]\n")
    assert main(["suite", str(suite)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "pretrained weights of 3 model(s)" in err
    for model in ("densenet121", "resnet50", "vgg16"):
        assert f"- {model}: ImageNet-1k weights from timm {model}.tv_in1k" in err
    assert "mribench models fetch densenet121 resnet50 vgg16 --dir weights" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bad_override_names_the_key(capsys):
    assert main(["suite", "smoke", "--dry-run", "--set", "training.epoch=3"]) == 2
    assert "training.epoch" in capsys.readouterr().err
    assert main(["suite", "smoke", "--dry-run", "--set", "datasets.7.root=/x"]) == 2
    assert "datasets.7.root" in capsys.readouterr().err


def test_run_names_lead_with_what_differs_between_cells():
    titles = [c.title for c in expand(load_suite("cpu_demo"))]
    assert titles[0] == "efficientnet_lite0 / scratch / seed 0"
    two = load_suite("smoke", {"datasets": [{"name": "brain-tumor-mri-7023"},
                                            {"name": "brain-mri-binary-253"}],
                               "split.protocol": "holdout"})
    assert expand(two)[0].title.endswith("/ brain-tumor-mri-7023")
