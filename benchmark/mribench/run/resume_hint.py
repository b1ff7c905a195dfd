"""The command a user repeats to resume: the one they typed.

Under `mlflow run` the process is `python -m mribench suite ...` with every MLproject parameter
spelled out (empty ones as `--epochs ''`), and `mribench` may not be on the PATH of MLflow's
environment: the hint is then the `mlflow run . -e ENTRY -P name=value` line, naming only the
parameters that differ from the MLproject's defaults. MLflow Projects sets MLFLOW_RUN_ID in
the command's environment (mlflow.projects.utils.get_run_env_vars).
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

# the MLproject's entry points: option -> (parameter, default); the positional is `suite`
MLPROJECT = {
    "suite": {"--device": ("device", "auto"), "--epochs": ("epochs", ""),
              "--data-dir": ("data_dir", ""), "--experiment": ("experiment", ""),
              "--force": ("force", "false"), "--shard": ("shard", "0/1"),
              "--executor": ("executor", "local"), "--address": ("address", "")},
    "tune": {"--model": ("model", None), "--strategy": ("strategy", None),
             "--trials": ("trials", "20"), "--epochs": ("epochs", ""),
             "--data-dir": ("data_dir", "")},
}


def under_mlflow_project(argv: list[str]) -> bool:
    return bool(os.environ.get("MLFLOW_RUN_ID")) and Path(argv[0]).name == "__main__.py" \
        and len(argv) > 2 and argv[1] in MLPROJECT


def _pairs(args: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(positionals, [(option, value)]) of an argv tail whose options all take one value."""
    positional, options, i = [], [], 0
    while i < len(args):
        if args[i].startswith("--"):
            key, eq, value = args[i].partition("=")
            if not eq:
                value = args[i + 1] if i + 1 < len(args) else ""
                i += 1
            options.append((key, value))
        else:
            positional.append(args[i])
        i += 1
    return positional, options


def mlflow_command(argv: list[str]) -> str:
    entry = argv[1]
    positional, options = _pairs(argv[2:])
    params = [f"suite={positional[0]}"] if positional and positional[0] != "smoke" else []
    for option, value in options:
        name, default = MLPROJECT[entry].get(option, (None, None))
        if name and value != "" and value != default:
            params.append(f"{name}={value}")
    return shlex.join(["mlflow", "run", ".", "-e", entry,
                       *[part for p in params for part in ("-P", p)]])


def drop_empty(args: list[str]) -> list[str]:
    """The argv tail without options given an empty value (`--epochs ''`: MLproject's unset)."""
    out, i = [], 0
    while i < len(args):
        if args[i].startswith("--") and "=" not in args[i] and i + 1 < len(args) \
                and args[i + 1] == "":
            i += 2
            continue
        if args[i].startswith("--") and args[i].endswith("="):
            i += 1
            continue
        out.append(args[i])
        i += 1
    return out


def resume_command(suite_name: str, argv: list[str] | None = None) -> str:
    """The command line that was run, for the user to repeat (best effort)."""
    argv = sys.argv if argv is None else argv
    if under_mlflow_project(argv):
        return mlflow_command(argv)
    if Path(argv[0]).name in ("mribench", "__main__.py") and len(argv) > 1:
        return shlex.join(["mribench", *drop_empty(argv[1:])])
    return f"mribench suite {shlex.quote(suite_name)}"
