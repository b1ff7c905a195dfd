"""A SIGTERM that lands while MLflow is inside a store call (a SQLite transaction, a read whose
cursor is open) waits for the call to end: the run ends KILLED, never RUNNING, and the store is
not left locked for the next writer. The signal is sent from inside the call itself, at the
statement named, so every window is hit every time (a timed signal hits them by chance)."""
from __future__ import annotations

import os
import signal

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from mribench import tracking
from mribench.config.suite_file import parse_suite
from mribench.matrix import expand
from mribench.run import claims, stopping
from signalled import sigterm_at


def claimed_cell(experiment_id: str) -> None:
    """What a suite does with the store for one cell: claim it, enter its run, log params,
    metrics and tags, end it (the training between is left out)."""
    (cell,) = expand(parse_suite(SUITE))
    with stopping.on_signals():
        taken = claims.claim(experiment_id, cell)
        try:
            with tracking.cell_run(cell.title, cell.tags(), run_id=taken.run_id):
                tracking.log_params({"lr": 0.001, "epochs": 2})
                tracking.log_metrics({"test_accuracy": 0.5})
                tracking.set_tags({"stage": "scored"})
        except stopping.Stopped as stop:  # as executors.run_claimed does
            claims.close_stopped(taken.run_id, stop)
            raise


SUITE = {"name": "stops", "datasets": [{"name": "brain-mri-binary-253"}],
         "models": [{"name": "test_resnet"}], "strategies": ["scratch"], "seeds": [0]}


@pytest.mark.parametrize("statement, ends", [
    ("SELECT runs", "KILLED"),  # a read with its cursor open (the claim's search)
    ("INSERT INTO runs", "KILLED"),  # the claim being stored
    ("INSERT INTO tags", "KILLED"),  # the claim's tags, same transaction
    ("SELECT inputs.input_uuid AS inputs_input_uuid, inputs.source_type", "KILLED"),  # cell_run
    # resuming the claim (MLflow reading the run back)
    ("INSERT INTO params", "KILLED"),  # a write transaction open: the lock that outlived it
    ("INSERT INTO metrics", "KILLED"),
    ("UPDATE runs SET status=?, end_time=?", "FINISHED"),  # the end itself: nothing cut short
])
def test_a_stop_inside_a_store_call_ends_the_run_and_leaves_the_store_writable(
        tmp_path, statement, ends):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("stops")
    with sigterm_at(statement) as sent, pytest.raises(stopping.Stopped):
        claimed_cell(exp)
    assert sent, f"no statement starting {statement!r} ran"
    client = MlflowClient()
    (run,) = client.search_runs([exp])
    assert run.info.status == ends, run.data.tags.get("error")
    if ends == "KILLED":
        assert run.data.tags["stop_signal"] == "SIGTERM"
    else:  # it had logged everything before the stop
        assert run.data.params == {"lr": "0.001", "epochs": "2"}
    # a lock left behind would make this wait out SQLite's busy timeout and fail
    again = client.create_run(exp).info.run_id
    client.set_terminated(again, "FINISHED")
    assert client.get_run(again).info.status == "FINISHED"


def test_a_stop_while_held_waits_for_the_block_and_a_second_one_is_not_held():
    with stopping.on_signals():
        done = []
        with pytest.raises(stopping.Stopped) as stop:
            with stopping.held():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the block went on")
            done.append("never")
        assert done == ["the block went on"] and stop.value.name == "SIGTERM"
        # the first stop put the default action back: a second signal ends the process at once
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
