"""A suite file: found by name or path, read as strict YAML, command-line overrides applied, and
validated into a `Suite` (config/schema.py), with errors naming the file and the YAML path of the key."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mribench.config import paths, problems, strict_yaml
from mribench.config.schema import SUITES_DIR, Suite, SuiteError


def resolve_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or a bare name: ./suites/NAME.yaml (your own suites), then the
    suites shipped with the package."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in str(name_or_path):
        if path.is_file():
            return path
        if path.exists():  # a folder, a FIFO (reading it would block), a device
            raise SuiteError(f"suite file {str(name_or_path)!r} is not a regular file")
        raise SuiteError(f"suite file {str(name_or_path)!r} not found (looked at {path.resolve()})")
    for folder in (Path("suites"), SUITES_DIR):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
    raise SuiteError(f"suite {str(name_or_path)!r} not found in ./suites or {SUITES_DIR}; "
                     f"shipped suites: {known}")


def format_errors(err: ValidationError, source: str) -> str:
    """One line per problem: `file: key: what (got value)` (config/problems.py)."""
    return "\n".join(f"{source}: {line}" for line in problems.lines(err, Suite))


def parse_suite(data: Any, source: str = "<suite>", overrides: dict[str, Any] | None = None) -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite is a YAML mapping, got {type(data).__name__}")
    data = _apply_overrides(data, overrides or {})
    try:
        return Suite(**data)
    except ValidationError as err:
        raise SuiteError(format_errors(err, source)) from None


def load_suite(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Suite:
    path = resolve_path(name_or_path)
    try:
        data = strict_yaml.read_file(path)
    except strict_yaml.FileError as err:
        raise SuiteError(str(err)) from None
    return parse_suite(data, str(path), overrides)


def _apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Dotted overrides from the command line, e.g. {'training.epochs': 3}; a value of None sets
    the key to null (`--set training.max_loss=null`), as the same YAML in the file would.

    `axes.<path>` is one key (an axis path has dots of its own): `--set 'axes.training.lr=[0.1]'`
    replaces that axis's values, `=null` removes the axis. A setting an axis writes cannot also
    be --set: the axis would overwrite it in every cell, silently."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for dotted, value in overrides.items():
        if dotted.startswith("axes."):
            axes = data.get("axes") if isinstance(data.get("axes"), dict) else {}
            data["axes"] = axes
            if value is None:
                axes.pop(dotted.removeprefix("axes."), None)
            else:
                axes[dotted.removeprefix("axes.")] = value
    for dotted, value in overrides.items():
        if dotted.startswith("axes."):
            continue
        _refuse_axis_setting(dotted, value, data.get("axes"))
        try:
            paths.write(data, dotted, value)
        except paths.PathError as err:
            raise SuiteError(f"override {dotted}={value!r}: no such place in the suite ({err})"
                             ) from None
    return data


def _refuse_axis_setting(dotted: str, value: Any, axes: Any) -> None:
    if not isinstance(axes, dict):
        return
    for path in axes:
        # the setting the axis writes, or something inside it (`*` is every list item)
        if paths.overlaps(dotted, str(path)):
            raise SuiteError(
                f"--set {dotted}={value!r}: the axis axes.{path} sets this value in every cell and "
                f"would override it; edit or remove the axis instead (--set 'axes.{path}=[...]', "
                f"or --set axes.{path}=null to remove it)")
