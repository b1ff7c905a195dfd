"""Config paths: the one way to name a place in a suite, read by `axes:` keys and `--set`, and
written by every error message that names a key.

A path is keys joined by dots. A list item is `key[i]` or `key.i`, every item of a list `key[*]`
or `key.*`: `training.lr`, `datasets[*].train_per_class`, `models.0.name` and `models[0].name`
are all paths. Messages about a config's keys show them one way, `datasets[0].train_per_class`
(`show`, used by config/problems.py).
"""
from __future__ import annotations

import copy
import re
from typing import Any

from mribench.errors import UserError

EVERY = "*"  # the step for every item of a list
# one dotted part: a key (a bare index in the dotted form), then any `[i]` / `[*]`
_PART = re.compile(r"^(?P<key>[^.\[\]]+)(?P<index>(?:\[(?:\*|[0-9]+)\])*)$")
# a setting's own part, as an axis writes it (an axis's name becomes a tag name): `key`,
# `key[i]` or `key[*]`
SETTING = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)(\[(?P<index>\*|[0-9]+)\])?$")

Step = str | int  # a key, a list index, or EVERY


class PathError(UserError):
    """A path that is not written right, or that leads nowhere in the suite."""


class NoMatch(PathError):
    """A path that reaches no setting of the suite (a `[*]` over an empty list)."""


def parse(path: str) -> list[Step]:
    """`datasets[*].train_per_class` -> ['datasets', '*', 'train_per_class'];
    `models[0].name` -> ['models', 0, 'name']; `models.0.name` -> ['models', '0', 'name'] (a
    dotted number is a key of a block or the index of a list item, whichever is there)."""
    steps: list[Step] = []
    for part in str(path).split("."):
        m = _PART.match(part)
        if not m:
            raise PathError(f"{path!r}: {part!r} is not `key`, `key[i]` or `key[*]`")
        steps.append(m["key"])
        steps += [i if i == EVERY else int(i) for i in re.findall(r"\[(\*|[0-9]+)\]",
                                                                    m["index"])]
    return steps


def show(steps: list[Step]) -> str:
    """The path as messages write it: `datasets[0].train_per_class`, `axes[*]`."""
    out = ""
    for step in steps:
        if isinstance(step, int) or step == EVERY:
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
    return out


def tag_safe(path: str) -> str:
    """The path as an MLflow tag name may hold it (no `[`, `]` or `*`):
    `datasets[0].near_bits` -> `datasets.0.near_bits`, `datasets[*].x` -> `datasets.x`."""
    return ".".join(str(step) for step in parse(path) if step != EVERY)


def overlaps(a: str, b: str) -> bool:
    """Whether path `a` is path `b` or a place inside it (`*` matches any item)."""
    mine, theirs = _loose(a), _loose(b)
    return len(mine) >= len(theirs) and all(x == y or EVERY in (x, y)
                                             for x, y in zip(mine, theirs))


# a dataset's own block that, when unset, is the suite's: writing a setting inside it starts
# from the suite's block, not from the block's defaults (`datasets[*].split.val_fraction` must
# keep the suite's holdout protocol, `datasets[*].robustness.severities` its artefacts)
_INHERITED = {("datasets", "split"): "split", ("datasets", "robustness"): "robustness"}


def write(data: dict, path: str, value: Any) -> None:
    """Put `value` at `path` in a suite's data (every item for `[*]`), making the blocks on the
    way; PathError when the path runs into a value or past a list's end, NoMatch when it
    reaches nothing."""
    nodes: list = [data]
    *parents, leaf = parse(path)
    above = None  # the key of the block or list the nodes are in
    for step in parents:
        nxt = []
        for node in nodes:
            nxt += _children(data, node, step, above)
        if not nxt:  # e.g. `[*]` over an empty list: the path would change nothing
            raise NoMatch(f"{above} has no items" if step == EVERY else f"{above} is empty")
        nodes = nxt
        if not (_is_index(step) or str(step).isdigit()):
            above = step
    for node in nodes:
        if isinstance(node, list):
            for i in _indices(node, leaf, above):
                node[i] = copy.deepcopy(value)
        elif _is_index(leaf):
            raise PathError(f"{above} is not a list")
        else:
            node[leaf] = copy.deepcopy(value)


def _children(data: dict, node: Any, step: Step, above: str | None) -> list:
    """What `step` leads to from `node`: a block (made when missing), a list, its items."""
    if isinstance(node, list):
        items = [node[i] for i in _indices(node, step, above)]
        if step == EVERY:  # the items that are blocks: `[*]` over bare names passes them by
            return [item for item in items if isinstance(item, (dict, list))]
        if not isinstance(items[0], (dict, list)):
            raise PathError(f"{above}[{step}] is not a block of settings")
        return items
    if _is_index(step):  # `[i]` / `[*]` on a block
        raise PathError(f"{above} is not a list")
    child = node.get(step)
    if child is None:
        inherited = data.get(_INHERITED.get((above, step), ""))
        child = node[step] = copy.deepcopy(inherited) if isinstance(inherited, dict) else {}
    if not isinstance(child, (dict, list)):
        raise PathError(f"{step} is not a block of settings")
    return [child]


def _indices(items: list, step: Step, above: str | None) -> list[int]:
    if step == EVERY:
        return list(range(len(items)))
    if not str(step).isdigit():
        raise PathError(f"{above} is a list: name its items by index ({above}[0].{step}) or "
                        f"all of them ({above}[*].{step})")
    if int(step) >= len(items):
        raise PathError(f"{above} has {len(items)} item(s), no [{step}]")
    return [int(step)]


def _is_index(step: Step) -> bool:
    return isinstance(step, int) or step == EVERY


def _loose(path: str) -> list[str]:
    """The path's steps as text, for comparing paths written either way; a path that does not
    parse is compared as written."""
    try:
        return [str(step) for step in parse(path)]
    except PathError:
        return [part for part in re.split(r"[.\[\]]+", path) if part]
