"""A suite dataset's `fallback`: the registered dataset used when the named one is not found.

Resolved once per invocation, before the suite is expanded into cells, so each cell's identity
(run_key), run name and `dataset` tag name the data it actually ran on: a cell run on the
embedded sample never passes for (or skips) a cell of the full set. Only datasets that declare a
fallback are ever replaced, and every replacement is said on the console and in MLflow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mribench.config.schema import DatasetConfig, Suite
from mribench.console import console
from mribench.data.locate import candidate_dirs, find_root
from mribench.data.registry import KNOWN
from mribench.data.samples import DataError


@dataclass(frozen=True)
class Substitution:
    wanted: str  # the dataset the suite names
    used: str  # its fallback, used instead
    reason: str  # why the wanted one could not be used (where it was looked for)


def _missing(ds: DatasetConfig, data_dir: str | None) -> str | None:
    """Why the dataset cannot be used here (where it was looked for), or None when it can."""
    if ds.manifest:
        path = Path(ds.manifest).resolve()
        return None if path.is_file() else f"manifest {path} does not exist"
    try:
        find_root(ds.name, ds.root, data_dir)
    except DataError as err:
        return str(err)
    return None


def _fall_back(ds: DatasetConfig) -> DatasetConfig:
    # the fallback is a registered dataset: a user root or manifest does not carry over
    return ds.model_copy(update={"name": ds.fallback, "fallback": None, "root": None,
                                 "manifest": None})


def substitute(suite: Suite, data_dir: str | None) -> tuple[Suite, list[Substitution]]:
    """The suite with every fallback decided: the named dataset when found (its `fallback`
    cleared), else the fallback dataset in its place; plus what was replaced and why."""
    candidate_dirs(data_dir)  # an explicit --data-dir that does not exist is an error, not a miss
    datasets, subs = [], []
    for ds in suite.datasets:
        reason = _missing(ds, data_dir) if ds.fallback else None
        if reason:
            subs.append(Substitution(ds.name, ds.fallback, reason))
            datasets.append(_fall_back(ds))
        else:
            datasets.append(ds.model_copy(update={"fallback": None}))
    return suite.model_copy(update={"datasets": datasets}), subs


def alternatives(suite: Suite) -> list[Suite]:
    """The suite as written, and with every fallback taken: the versions whose cells a report
    counts (a machine without the full set logged cells of the fallback)."""
    named = suite.model_copy(update={"datasets": [ds.model_copy(update={"fallback": None})
                                                  for ds in suite.datasets]})
    if not any(ds.fallback for ds in suite.datasets):
        return [named]
    fell_back = [_fall_back(ds) if ds.fallback else ds for ds in suite.datasets]
    return [named, suite.model_copy(update={"datasets": fell_back})]


def announce(subs: list[Substitution]) -> dict[str, str]:
    """Say each replacement on the console; returns it as MLflow params/tags of the parent run."""
    for s in subs:
        note = KNOWN[s.used].note
        console.print(f"[yellow]dataset {s.wanted} not found; using its fallback {s.used}"
                      f"{' (' + note + ')' if note else ''}[/]", highlight=False)
        console.print(f"  {s.reason}", style="dim", highlight=False, markup=False)
    return {f"data_fallback.{s.wanted}": s.used for s in subs}
