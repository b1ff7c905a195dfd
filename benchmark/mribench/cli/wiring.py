"""Small argument helpers shared by the command groups (no heavy imports)."""
from __future__ import annotations

import argparse


def truthy(value: str) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def blank_to_none(value: str | None) -> str | None:
    # MLproject passes unset parameters as empty strings
    return value if value not in (None, "") else None


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)
