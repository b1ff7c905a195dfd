"""A store that fails mid-suite ends it in one line (exit 1); one down from the start, at once."""
from __future__ import annotations

import time

import mlflow
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mribench.cli.main import main
from mribench.config.schema import SUITES_DIR
from mribench.run import executors
from servers import free_port


def _tiny(tmp_path) -> str:
    data = yaml.safe_load((SUITES_DIR / "smoke.yaml").read_text())
    data.update(name="tiny", experiment="store-fails", seeds=[0, 1, 2],
                models=[{"name": "test_resnet"}], explain={"methods": []})
    data["training"]["epochs"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_full_disk_mid_suite_ends_it_in_one_line_and_a_rerun_resumes(
        tmp_path, mlflow_store, smoke_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    suite = _tiny(tmp_path)
    real_run_cell, real_log = executors.run_cell, mlflow.log_metrics
    cells = []

    def full_from_the_second_cell(*args, **kwargs):  # SQLite's own words when the disk fills
        raise MlflowException("(sqlite3.OperationalError) database or disk is full")

    def counting(cell, opts):
        cells.append(cell)
        if len(cells) == 2:
            monkeypatch.setattr(mlflow, "log_metrics", full_from_the_second_cell)
            monkeypatch.setattr(mlflow, "set_tags", full_from_the_second_cell)
        return real_run_cell(cell, opts)

    monkeypatch.setattr(executors, "run_cell", counting)
    code = main(["suite", suite, "--data-dir", str(smoke_data_dir)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "MlflowException" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1]
    line = errors[0]
    assert "database or disk is full" in line and "while cell" in line and "seed 1" in line
    assert "1 cell(s) this invocation finished are safe" in line and "to resume" in line
    assert len(cells) == 2  # stopped there: the third cell was never started
    # the disk has room again: the rerun skips the finished cell and runs the others
    monkeypatch.setattr(mlflow, "log_metrics", real_log)
    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["suite", suite, "--data-dir", str(smoke_data_dir)]) == 0
    client = MlflowClient(mlflow_store)
    exp = client.get_experiment_by_name("store-fails")
    runs = client.search_runs([exp.experiment_id], "tags.role = 'cell'")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 3 and len({r.data.tags["run_key"] for r in finished}) == 3


def test_a_server_down_from_the_start_is_named_within_seconds(monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("BENCHMARK_STORE_PROBE_S", "3")
    start = time.monotonic()
    assert main(["report", "smoke"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert f"tracking server http://127.0.0.1:{port} is unreachable" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
