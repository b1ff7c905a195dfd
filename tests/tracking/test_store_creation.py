"""A fresh SQLite store appears whole or not at all, whatever moment a first invocation dies."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mribench.tracking.store import TrackingError, _check_complete

SETUP = "from mribench import tracking; tracking.setup('first-minute')"


def _env(db) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**clean, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}


def test_sigkill_at_any_moment_of_store_creation_leaves_no_store_or_a_whole_one(tmp_path):
    # the kill point walks over the creation window: from the moment the first file appears
    # beside the target to a little after the store is complete
    seen_partial = 0
    for i, delay in enumerate((0.0, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0)):
        db = tmp_path / f"run{i}" / "mlflow.db"
        db.parent.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", SETUP], env=_env(db),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not any(db.parent.glob("*mlflow.db*")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if db.exists():
            _check_complete(db)  # raises if half-made
        seen_partial += any(db.parent.glob(".mlflow.db.creating-*"))
        # the next invocation works, and cleans up what the dead one left
        done = subprocess.run([sys.executable, "-c", SETUP], env=_env(db), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert not list(db.parent.glob(".mlflow.db.creating-*"))
        _check_complete(db)
    assert seen_partial, "no kill landed inside the creation window: the test saw nothing"


def test_a_half_made_or_foreign_file_is_named_with_what_to_do(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(TrackingError, match="empty file, not an MLflow store: remove it"):
        _check_complete(empty)
    half = tmp_path / "half.db"
    con = sqlite3.connect(half)
    con.executescript("create table experiments (id int); create table runs (id int);"
                      "create table _alembic_tmp_latest_metrics (x int);")
    con.close()
    with pytest.raises(TrackingError, match="half-made MLflow store.*holds no runs: remove it"):
        _check_complete(half)
    con = sqlite3.connect(half)
    con.execute("insert into runs values (1)")
    con.commit()
    con.close()
    with pytest.raises(TrackingError, match="holds 1 run.*not ours to touch"):
        _check_complete(half)
    text = tmp_path / "notes.db"
    text.write_text("hello, not a database at all " * 100)
    with pytest.raises(TrackingError, match="not an SQLite database"):
        _check_complete(text)
