"""`mribench`: builds the parser from the command groups and maps errors to exit codes.

Nothing heavy at import time: `--help` must answer in well under 1.5 s. Each command group's
`cmd_*` handlers import what they need when they run.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from mribench.cli import data, models, perf, run, schema, use


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mribench",
        description="Transfer-learning benchmarks for brain MRI classification, tracked in MLflow.")
    from mribench import __version__

    parser.add_argument("--version", action="version", version=f"mribench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, use, data, models, perf, schema):
        group.register(sub)
    return parser

def main(argv: list[str] | None = None) -> int:
    from mribench import environment
    from mribench.console import console, set_results_stream
    from mribench.errors import EnvironmentFault
    from mribench.redact import MaskedStream

    args = build_parser().parse_args(argv)
    # results go to the real stdout; anything else that prints (MLflow's run links) to stderr;
    # credentials in URIs are masked on both
    set_results_stream(MaskedStream(sys.stdout))
    try:
        with contextlib.redirect_stdout(MaskedStream(sys.stderr)), \
                contextlib.redirect_stderr(MaskedStream(sys.stderr)):
            environment.check()
            return args.func(args)
    except (ValueError, FileNotFoundError, EnvironmentFault) as err:
        if os.environ.get("BENCHMARK_DEBUG"):
            raise
        # one clear line, no traceback (BENCHMARK_DEBUG=1 shows it): bad input (UserError and
        # every other ValueError) exits 2, a failing environment 1
        console.print("[red]error:[/] " + _escape(str(err)), highlight=False, soft_wrap=True)
        return 1 if isinstance(err, EnvironmentFault) else 2
    finally:
        set_results_stream(None)


def _escape(text: str) -> str:
    from rich.markup import escape

    from mribench.redact import mask

    return escape(mask(text))


if __name__ == "__main__":
    sys.exit(main())
