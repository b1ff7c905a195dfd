"""Where a command writes, checked before it does any work.

A path that exists as the wrong kind (a folder where a file goes, a file where a folder goes or
above it), a folder that cannot be written, a report folder outside the reports root: each is one
line naming the flag and the path (exit 2); a missing folder is created, as the commands always
did. A disk that fills up during the write is the environment's failure: one line and exit 1
(`mribench.cli.main`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from mribench.errors import UserError

REPORTS_ROOT = Path("reports")


class OutputError(UserError):
    """An output path that cannot be written as asked."""


def file_target(path: str | Path, flag: str) -> Path:
    """A file the command will write (`--csv FILE`)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; name a file inside it, e.g. "
                          f"{target / 'predictions.csv'}")
    if target.exists() and not target.is_file():
        raise OutputError(f"{flag} {path}: exists and is not a regular file")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{flag} {path}: exists and cannot be written (permissions)")
    _writable_folder(target.parent, flag, path)
    return target


def folder_target(path: str | Path, flag: str, ours: str | None = None) -> Path:
    """A folder the command will write into (`--out DIR`). `ours`: a file only this command
    writes there (a report's index.html); a folder holding other files but not that one is
    refused, since the command replaces the CSV and PNG files it finds."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {path}: is a file, not a folder; name a folder")
    _writable_folder(target, flag, path)
    if ours and target.is_dir() and any(target.iterdir()) and not (target / ours).exists():
        raise OutputError(f"{flag} {path}: the folder holds other files (no {ours} of an earlier "
                          "report); the report replaces the CSV and PNG files in its folder, so "
                          "name a new or empty folder")
    return target


def report_folder(name: str) -> Path:
    """The default report folder, reports/<name>, kept under reports/ whatever the suite is
    called: a name with a path in it (`../../x`, `/etc/x`, `a/b`) becomes one folder name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "suite"
    folder = REPORTS_ROOT / safe
    if not folder.resolve().is_relative_to(REPORTS_ROOT.resolve()):  # cannot happen; kept honest
        raise OutputError(f"suite name {name!r} cannot name a report folder; give --out DIR")
    return folder


def _writable_folder(folder: Path, flag: str, given: str | Path) -> None:
    """`folder` exists as a writable folder, or can be created: its nearest existing ancestor
    is a writable folder (not a file)."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            raise OutputError(f"{flag} {given}: {probe} is a dangling link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{flag} {given}: {probe} is a file, so nothing can be written under "
                          "it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {given}: the folder {probe} cannot be written (permissions)")


def registered_model_name(name: str) -> str:
    """A Model Registry name MLflow accepts (its own check: no `/` or `:`, not empty, not a
    path that normalises to something else), refused before any work."""
    from mribench.tracking.logged_model import name_problem

    problem = name_problem(name)
    if problem:
        raise OutputError(f"--register {name!r}: not a registered-model name MLflow accepts "
                          f"({problem})")
    return name
