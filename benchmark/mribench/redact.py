"""Credentials never reach the console, the logs or the tracking store.

A tracking or storage URI may carry a password (`http://user:password@host`,
`postgresql://user:password@db/optuna`, `...?password=...`). Everything this package prints or
logs goes through `mask`; `main` also wraps the streams MLflow and Optuna print to, and
`install_log_filter` masks the records of the loggers they log through.
"""
from __future__ import annotations

import logging
import re

_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:'\"]*):[^/@\s'\"]*@")
_QUERY = re.compile(r"(?i)(?P<head>[?&;](?:password|passwd|pwd|token|secret|api_key|apikey"
                    r"|access_token)=)[^&;\s'\"]+")


def mask(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:***@host`; secret query values -> ***."""
    if "://" not in text and "=" not in text:
        return text
    return _QUERY.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>:***@", text))


class MaskedStream:
    """A text stream that masks credentials in everything written through it."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(mask(text))
        return len(text)

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding, ...
        return getattr(self._inner, name)


class _MaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_FILTER = _MaskFilter()


def install_log_filter() -> None:
    """Mask records on every handler that prints them (root, MLflow's, Optuna's, last resort)."""
    handlers = list(logging.getLogger().handlers)
    for name in ("mlflow", "optuna", "alembic", "urllib3"):
        handlers += logging.getLogger(name).handlers
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
