"""The one rich Console for progress and logs (stderr), and result output (stdout).

Results (tables, JSON) go to stdout and nothing else does: `main` points sys.stdout at stderr
while a command runs, so libraries that print (MLflow's "View run ... at ...") cannot corrupt
`--json` output; results are written to the stream saved in `results_stream`.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

# soft_wrap: a log line stays one line (grep-able) whatever the terminal width
console = Console(stderr=True, soft_wrap=True)
_state: dict[str, Any] = {"out": None}


def esc(text: object) -> str:
    """Any name or message made safe to put into rich markup: a suite called `[/x]` or `[old]`
    is printed as written, neither an error nor silently eaten."""
    return escape(str(text))


def results_stream():
    """Where results go: the real stdout saved by `main`, else the current sys.stdout."""
    return _state["out"] or sys.stdout


def set_results_stream(stream) -> None:
    _state["out"] = stream


def emit_table(rows: list[dict[str, Any]], title: str, as_json: bool,
               columns: Iterable[str] | None = None, extra: dict[str, Any] | None = None) -> None:
    """Print rows as a table on stdout (never cut: cells wrap), or the rows as JSON on stdout."""
    out = results_stream()
    if as_json:
        payload = _finite({"title": title, "rows": rows, **(extra or {})})
        out.write(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")
        out.flush()
        return
    # every row's keys, in first-seen order: a column only some rows have is still shown
    cols = list(columns or dict.fromkeys(k for row in rows for k in row))
    table = Table(title=escape(title))
    for col in cols:
        table.add_column(escape(str(col)), overflow="fold")
    for row in rows:
        table.add_row(*[escape(_fmt(row.get(c))) for c in cols])
    # piped output has no terminal width: lay the table out at its natural width, uncut
    width = None if out.isatty() else 100_000
    printer = Console(file=out, width=width, highlight=False, soft_wrap=False)
    printer.print(table, crop=False)
    for key, value in (extra or {}).items():
        printer.print(escape(f"{key}: {value}"), crop=False)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, float) for v in value):
        return f"[{value[0]:.4g}, {value[1]:.4g}]"
    return str(value)


def _finite(value: Any) -> Any:
    """NaN and infinities become null: strict JSON has no NaN, and scripts must parse it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
