"""Stopping a real `mribench` process mid-work with a signal, for the tests of clean stops.

A command that is printing its results is caught mid-write: its stdout is a pipe shrunk to one
page that nobody reads until the pipe is full, so the process is blocked writing its table when
the signal comes. A command that works before it prints is signalled when `ready` says so.
`sigterm_at` lands one inside a named SQL statement of this process (every time, not by chance)."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

PAGE = 4096
F_SETPIPE_SZ = 1031


def stop(args: list[str], signum: int, env: dict, cwd,
         ready: Callable[[str], bool] | None = None, timeout: float = 240) -> tuple[int, str, str]:
    """(exit code, stderr, stdout) of `mribench ARGS` sent `signum` once its stdout pipe is
    full (or `ready(stderr so far)` is true)."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, PAGE)
    proc = subprocess.Popen([sys.executable, "-m", "mribench", *args], cwd=cwd, env=env,
                            stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (ready("".join(err)) if ready else _pending(read_end) >= PAGE):
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"{args} ended before the signal: {_rest(read_end)}"
        assert time.monotonic() < deadline, f"{args} never got to the point to signal"
        proc.send_signal(signum)
        out = _rest(read_end)  # drain: the process flushes what it had at exit
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(read_end)
    reader.join(timeout=30)
    return proc.returncode, "".join(err), out


def _pending(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def _rest(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def one_stop_line(code: int, err: str, signum: int) -> str:
    """The exit code is 128 + the signal and the process said so in one line, no traceback."""
    name = signal.Signals(signum).name
    assert code == 128 + signum, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    said = [line for line in err.splitlines() if f"stopped by {name}" in line]
    assert len(said) == 1, err[-3000:]
    return said[0]


@contextmanager
def sigterm_at(statement: str) -> Iterator[list[str]]:
    """Send this process SIGTERM right after the first SQL statement starting with `statement`
    has run: its handler then runs at the next bytecode, inside SQLAlchemy and MLflow. Yields
    the statement it fired on ([] if none ran)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent: list[str] = []

    def send(conn, cursor, sql, *_) -> None:
        if not sent and sql.startswith(statement):
            sent.append(sql)
            os.kill(os.getpid(), signal.SIGTERM)
    event.listen(Engine, "after_cursor_execute", send)
    try:
        yield sent
    finally:
        event.remove(Engine, "after_cursor_execute", send)
