"""`mribench`: builds the parser from the command groups and maps errors to exit codes.

Nothing heavy at import time: `--help` must answer in well under 1.5 s. Each command group's
`cmd_*` handlers import what they need when they run.
"""
from __future__ import annotations

import argparse
import contextlib
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
    """The command's exit code; SIGINT/SIGTERM anywhere in it end it cleanly (`_stops`)."""
    return _stops(_command, argv)


def _command(argv: list[str] | None = None) -> int:
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
    except (ValueError, FileNotFoundError, EnvironmentFault, OSError) as err:
        if environment.debug() or not _reported(err):
            raise
        # one clear line per problem, no traceback (BENCHMARK_DEBUG=1 shows it): bad input
        # (UserError, a config built from flags) exits 2, a failing environment (a full disk
        # included) 1
        text, code = _describe(err)
        for line in text.splitlines() or [""]:
            # one `error:` per problem; an indented line continues the one above (a listing)
            prefix = "" if line[:1].isspace() else "[red]error:[/] "
            console.print(prefix + _escape(line), highlight=False, soft_wrap=True)
        return code
    finally:
        set_results_stream(None)


def _reported(err: BaseException) -> bool:
    """Whether `err` is said in one line: any but a ValueError that is no UserError and no
    pydantic error (a config built from flags), which is a bug and keeps its traceback."""
    from pydantic import ValidationError

    from mribench.errors import UserError

    return not isinstance(err, ValueError) or isinstance(err, (UserError, ValidationError))


def _describe(err: BaseException) -> tuple[str, int]:
    """The message and exit code of an error that ends a command."""
    from pydantic import ValidationError

    from mribench.errors import EnvironmentFault

    if isinstance(err, ValidationError):  # a config built from flags (validated files say more)
        from mribench.config.problems import lines

        return "\n".join(lines(err)), 2
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
        # a disk that fills or fails mid-write, a folder that turned read-only: the environment
        import errno

        where = f"{err.filename}: " if err.filename else ""
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        return f"{where}{err.strerror or err}; the command stopped" + (
            " (free some space, then run it again)" if full else ""), 1
    return str(err), 1 if isinstance(err, EnvironmentFault) else 2


def _stops(command, argv: list[str] | None) -> int:
    """Run `command(argv)` with SIGTERM and SIGINT turned into `Stopped` (run/stopping.py), so
    every command ends a signal the same way: the runs it opened are closed KILLED by their
    contexts on the way out, then one line and exit 128 + the signal (143, 130), no traceback.
    A KeyboardInterrupt from elsewhere (Ctrl-C before the handlers were set) counts as SIGINT."""
    import signal

    from mribench.run import stopping

    try:
        with stopping.on_signals():
            return command(argv)
    except KeyboardInterrupt as err:
        from mribench import environment

        if environment.debug():
            raise
        stop = err if isinstance(err, stopping.Stopped) else stopping.Stopped(signal.SIGINT)
        # suite and tune catch their own stop and say what they kept; here the other commands:
        # what they printed or wrote so far is incomplete, the runs they opened were closed
        notes = "".join(f"; {note}" for note in getattr(stop, "notes", []))
        sys.stderr.write(f"stopped by {stop.name}: mribench {_name(argv)} did not finish"
                         f"{_plain(notes)}; run it again for its full output\n")
        return stop.exit_code


def _name(argv: list[str] | None) -> str:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    return words[0] if words else ""


def _plain(text: str) -> str:
    from mribench.redact import mask

    return mask(text)


def _escape(text: str) -> str:
    from rich.markup import escape

    from mribench.redact import mask

    return escape(mask(text))


if __name__ == "__main__":
    sys.exit(main())
