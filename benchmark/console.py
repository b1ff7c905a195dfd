"""The one rich Console (on stderr, so stdout stays clean for --json) and table output."""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def emit_table(rows: list[dict[str, Any]], title: str, as_json: bool,
               columns: Iterable[str] | None = None, extra: dict[str, Any] | None = None) -> None:
    """Print rows as a rich table on stderr, or the same rows as JSON on stdout."""
    if as_json:
        payload = _finite({"title": title, "rows": rows, **(extra or {})})
        sys.stdout.write(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")
        return
    cols = list(columns or (rows[0].keys() if rows else []))
    table = Table(title=title)
    for col in cols:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in cols])
    console.print(table)
    for key, value in (extra or {}).items():
        console.print(f"{key}: {value}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
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
