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


def device(name: str) -> str:
    """--device NAME resolved (`auto` -> cuda or cpu); CUDA asked for where there is none is the
    user's to fix (exit 2)."""
    from mribench.errors import UserError
    from mribench.train.engine import resolve_device

    try:
        return resolve_device(name)
    except ValueError as err:
        raise UserError(f"--device {name}: {err}") from None
