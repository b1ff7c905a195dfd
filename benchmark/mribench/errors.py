"""The two kinds of failure a command reports in one line instead of a traceback.

- `UserError`: something the user can fix (a config key, a value, a path, a name, a file);
  exit status 2. Every input check raises a subclass (SuiteError, DataError, ...).
- `EnvironmentFault`: the environment failed under a correct command (the tracking store is
  unreachable or its disk is full); exit status 1.
Signals end a command with 130 (SIGINT) or 143 (SIGTERM) after a clean stop. The mapping lives
in one place, `mribench.cli.main`.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input the user can fix; the message names the file, key or value."""


class UnknownName(UserError, KeyError):
    """A name missing from a registry; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EnvironmentFault(RuntimeError):
    """The environment failed (store down, disk full); the message says what and what to do."""
