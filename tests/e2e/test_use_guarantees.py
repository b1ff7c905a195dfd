"""`predict`, `evaluate` and `report` keep the suite's promises: a signal ends them with 130/143
and one line, leaving no run RUNNING; a damaged logged model, a special file named like an
image, a bad manifest or an output path that cannot be written is one line (exit 2) before any
work; a disk that fills up mid-write is one line (exit 1)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mribench.data.registry import SAMPLE_DIR
from signalled import one_stop_line, sigterm_at, stop

IMAGE = SAMPLE_DIR / "Testing" / "glioma" / sorted(os.listdir(SAMPLE_DIR / "Testing" / "glioma"))[0]


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """One finished cell with a logged model (tiny ResNet, 1 epoch, 32 px, the shipped sample)."""
    tmp = tmp_path_factory.mktemp("use-guarantees")
    suite = {"name": "guard", "experiment": "guard",
             "datasets": [{"name": "brain-tumor-mri-7023-sample"}],
             "split": {"protocol": "official", "val_fraction": 0.25},
             "preprocess": {"image_size": 32}, "training": {"epochs": 1, "batch_size": 8},
             "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0]}
    (tmp / "guard.yaml").write_text(yaml.safe_dump(suite))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "BENCHMARK_CACHE_DIR": str(tmp / "cache"), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = run(["suite", "guard.yaml"], env, tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("guard")
    (model_run,) = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
    return tmp, env, model_run.info.run_id


def run(args: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mribench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_error(done: subprocess.CompletedProcess, code: int = 2) -> str:
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


@pytest.fixture
def here(cell, monkeypatch, capsys):
    """`mribench ARGS` in this process (a fresh interpreter costs ~10 s on a loaded machine)
    against the cell's store, from its folder: (exit code, stderr) as a CompletedProcess."""
    tmp, env, _ = cell
    for key in ("MLFLOW_TRACKING_URI", "BENCHMARK_CACHE_DIR"):
        monkeypatch.setenv(key, env[key])
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])  # for the test's own reads (conftest resets)
    monkeypatch.chdir(tmp)

    def call(args: list[str]) -> subprocess.CompletedProcess:
        from mribench.cli.main import main

        capsys.readouterr()
        code = main(args)
        said = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, said.out, said.err)
    return call


# ---------------------------------------------------------------------------- signals

def test_ctrl_c_while_predict_prints_exits_130_in_one_line(cell):
    tmp, env, run_id = cell
    code, err, out = stop(["predict", run_id, str(SAMPLE_DIR), "--json"], signal.SIGINT, env,
                          tmp)
    line = one_stop_line(code, err, signal.SIGINT)
    assert "mribench predict did not finish" in line
    assert len(out) >= 4096  # it was stopped while writing its results


def test_sigterm_while_report_works_exits_143_in_one_line(cell):
    tmp, env, _ = cell
    code, err, _ = stop(["report", "guard.yaml", "--out", "signalled-report"], signal.SIGTERM,
                        env, tmp, ready=lambda said: "reading 1 runs" in said)
    assert "mribench report did not finish" in one_stop_line(code, err, signal.SIGTERM)


def test_sigterm_during_evaluate_ends_its_run_killed_and_exits_143(cell):
    tmp, env, run_id = cell
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("guard").experiment_id

    def evaluating() -> list:
        return client.search_runs([exp], "tags.role = 'evaluation' and "
                                  "attributes.status = 'RUNNING'")

    before = {r.info.run_id for r in client.search_runs([exp], "tags.role = 'evaluation'")}
    code, err, _ = stop(["evaluate", run_id, "--root", str(SAMPLE_DIR / "Testing"), "--name",
                         "again"], signal.SIGTERM, env, tmp, ready=lambda _: bool(evaluating()))
    line = one_stop_line(code, err, signal.SIGTERM)
    (new,) = [r for r in client.search_runs([exp], "tags.role = 'evaluation'")
              if r.info.run_id not in before]
    assert not evaluating()  # the promise: never left RUNNING
    if new.info.status == "FINISHED":
        # on an idle machine the sample's evaluation can end between seeing the run RUNNING
        # and the signal landing: then nothing was cut short, and the line must not say so
        assert "marked KILLED" not in line
        return
    assert new.info.status == "KILLED" and new.data.tags["stop_signal"] == "SIGTERM"
    assert f"the evaluation run {new.info.run_id} was marked KILLED" in line


@pytest.mark.parametrize("statement", ["INSERT INTO runs", "INSERT INTO params",
                                       "INSERT INTO metrics"])
def test_sigterm_inside_evaluate_s_store_writes_ends_its_run_killed(cell, here, statement):
    """The timed signal above lands wherever the process happens to be; this one lands inside
    the named store write every time (storing the run, its params, its metrics)."""
    tmp, env, run_id = cell
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("guard").experiment_id
    before = {r.info.run_id for r in client.search_runs([exp], "tags.role = 'evaluation'")}
    with sigterm_at(statement) as sent:
        done = here(["evaluate", run_id, "--root", str(SAMPLE_DIR / "Testing"), "--name",
                     "inside"])
    assert sent, f"evaluate ran no statement starting {statement!r}"
    line = one_stop_line(done.returncode, done.stderr, signal.SIGTERM)
    (new,) = [r for r in client.search_runs([exp], "tags.role = 'evaluation'")
              if r.info.run_id not in before]
    assert new.info.status == "KILLED" and new.data.tags["stop_signal"] == "SIGTERM"
    assert f"the evaluation run {new.info.run_id} was marked KILLED" in line


# ---------------------------------------------------------------------------- damaged model

def _package_file(tmp: Path, run_id: str, name: str) -> Path:
    """The logged model's file in the local artifact store (where MLflow keeps it)."""
    from mribench.tracking import logged_model

    uri = logged_model.logged_model_uri(run_id)
    model_id = uri.rsplit("/", 1)[-1]
    (found,) = [p for p in tmp.rglob(name) if model_id in str(p)]
    return found


@pytest.mark.parametrize("name, damage, said", [
    ("weights.pt", lambda b: b[: len(b) // 3], "weights.pt cannot be read"),
    ("weights.pt", None, "weights.pt is missing"),
    ("manifest.json", lambda b: b"{not json", "manifest.json cannot be read"),
], ids=["truncated-weights", "missing-weights", "manifest-not-json"])
def test_a_damaged_logged_model_is_one_line_naming_the_run_and_the_file(cell, here, name,
                                                                         damage, said):
    tmp, env, run_id = cell
    file = _package_file(tmp, run_id, name)
    good = file.read_bytes()
    try:
        if damage is None:
            file.unlink()
        else:
            file.write_bytes(damage(good))
        for command in (["predict", run_id, str(IMAGE)],
                        ["evaluate", run_id, "--root", str(SAMPLE_DIR / "Testing")]):
            line = one_error(here(command))
            assert f"run {run_id}" in line and said in line, line
    finally:
        file.write_bytes(good)
    assert here(["predict", run_id, str(IMAGE)]).returncode == 0  # repaired: works


# ---------------------------------------------------------------------------- special files

def test_a_fifo_named_like_an_image_is_named_and_never_opened(cell, here):
    """Through the installed console script from outside the repository (a hang would time
    out), then in-process for a FIFO inside a folder and one listed in a manifest."""
    tmp, env, run_id = cell
    fifo = tmp / "scan.jpg"
    os.mkfifo(fifo)
    folder = tmp / "with-fifo"
    folder.mkdir()
    shutil.copy(IMAGE, folder / "a.jpg")
    os.mkfifo(folder / "b.png")
    (tmp / "lists-fifo.csv").write_text("path\nscan.jpg\n")
    try:
        done = subprocess.run([shutil.which("mribench"), "predict", run_id, str(fifo)], cwd=tmp,
                              env=env, capture_output=True, text=True, timeout=120)
        line = one_error(done)
        assert str(fifo) in line and "not a regular file" in line, line
        for target, named in ((folder, str(folder / "b.png")),
                              (tmp / "lists-fifo.csv", "lists-fifo.csv:2")):
            line = one_error(here(["predict", run_id, str(target)]))
            assert named in line and "not a regular file" in line, line
    finally:
        fifo.unlink()


@pytest.mark.parametrize("content, said", [
    (b"path,label\na.jpg,glioma\nb\0.jpg,glioma\n", "bad.csv:3: a NUL byte"),
    (b"path,label\na.jpg,glioma\n\"" + b"x" * 200_000 + b"\",glioma\n",
     "bad.csv:3: not a CSV row (field larger than field limit"),
    (b"path,label\na.jpg,gliome b\xe9nin\n", "bad.csv:2: not UTF-8 text"),
], ids=["nul", "oversized-field", "latin-1"])
def test_a_manifest_that_is_not_plain_csv_text_is_named_with_its_row(cell, here, content, said):
    tmp, env, run_id = cell
    (tmp / "bad.csv").write_bytes(content)
    shutil.copy(IMAGE, tmp / "a.jpg")
    assert said in one_error(here(["predict", run_id, "bad.csv"]))
    assert said in one_error(here(["evaluate", run_id, "--manifest", "bad.csv"]))


# ---------------------------------------------------------------------------- output paths

def test_output_paths_are_checked_before_any_work(cell, here):
    tmp, env, run_id = cell
    (tmp / "a-file").write_text("x")
    (tmp / "a-folder").mkdir(exist_ok=True)
    (tmp / "busy").mkdir(exist_ok=True)
    (tmp / "busy" / "mine.csv").write_text("keep me")
    cases = [
        (["predict", run_id, str(IMAGE), "--csv", "a-folder"], "--csv a-folder: is a folder"),
        (["predict", run_id, str(IMAGE), "--csv", "a-file/out.csv"], "a-file is a file"),
        (["predict", run_id, str(IMAGE), "--explain", "gradcam", "--out", "a-file/x"],
         "a-file is a file"),
        (["report", "guard.yaml", "--out", "a-file"], "--out a-file: is a file, not a folder"),
        (["report", "guard.yaml", "--out", "busy"], "the folder holds other files"),
        (["report", "guard.yaml", "--register", "team/champion"],
         "--register 'team/champion': not a registered-model name MLflow accepts"),
    ]
    for args, said in cases:
        done = here(args)
        line = one_error(done)
        assert said in line, line
        assert "reading" not in done.stderr  # refused before the runs were read
    assert (tmp / "busy" / "mine.csv").read_text() == "keep me"


def test_a_suite_name_with_a_path_in_it_still_reports_under_reports(cell, here):
    tmp, env, _ = cell
    data = yaml.safe_load((tmp / "guard.yaml").read_text())
    (tmp / "escape.yaml").write_text(yaml.safe_dump({**data, "name": "../../escaped"}))
    done = here(["report", "escape.yaml", "--experiment", "guard", "--all"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp / "reports" / "escaped" / "index.html").is_file()
    assert not (tmp.parent.parent / "escaped").exists()


@contextlib.contextmanager
def _tmpfs(disk: Path, options: str):
    """A 64 KiB tmpfs mounted at `disk` for the test (skipped where mounting is not allowed)."""
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a tmpfs ({options}) cannot be mounted here ({mounted.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_disk_that_fills_up_while_predict_writes_is_one_line_and_exit_1(cell, here):
    tmp, env, run_id = cell
    with _tmpfs(tmp / "tiny-disk", "size=64k") as disk:
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill it to the last block
            try:
                while True:
                    fh.write(b"\0" * 1024)
            except OSError:
                pass
        line = one_error(here(["predict", run_id, str(SAMPLE_DIR / "Testing"), "--csv",
                               str(disk / "out.csv")]), code=1)
        assert f"{disk / 'out.csv'}: No space left on device" in line, line
        assert not (disk / "out.csv").exists()  # whole or nothing
        assert [p.name for p in disk.iterdir()] == ["filler"]  # no temporary file left


def test_a_folder_that_cannot_be_written_is_refused_before_any_work(cell, here):
    """A read-only file system (permissions do not stop root; a read-only mount does)."""
    tmp, env, run_id = cell
    with _tmpfs(tmp / "read-only", "ro,size=64k") as disk:
        for args in (["predict", run_id, str(IMAGE), "--csv", str(disk / "sub" / "out.csv")],
                     ["report", "guard.yaml", "--out", str(disk / "report")]):
            done = here(args)
            line = one_error(done)
            assert f"the folder {disk} cannot be written" in line, line
            assert "reading" not in done.stderr
