"""Pydantic's validation errors as the user reads them: one line per problem, with the YAML path
of the key, the value given, what is allowed, and "did you mean ..." for a misspelt key or name.

Pydantic reports a value that fits none of a union's members once per member, under frames that
are not YAML keys (`constrained-int`, `literal['all']`, `function-after[...]`); those messages
are alternatives for one key and become one line. Class names and pydantic's links never show.
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from mribench.config.paths import show

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# frames pydantic adds for union members and validators: never a YAML key of ours
_FRAME = re.compile(r"^(function-(after|before|wrap|plain)|constrained-|literal\[|tagged-union"
                    r"|nullable|lax-|json-or-python)|^(int|str|float|bool|list|dict|none|tuple|"
                    r"set|is-instance)(\[.*\])?$")


def lines(err: ValidationError, model: type[BaseModel] | None = None,
          names: dict[str, str] | None = None) -> list[str]:
    """One line per problem: `path: what (got value)`; `model` (the class validated) lets an
    unknown key list the keys allowed there; `names` renames top-level keys (a command-line
    flag for a field: {"near_bits": "--near-bits"})."""
    grouped: dict[str, list[dict]] = {}
    for e in err.errors():
        grouped.setdefault(_path(e["loc"], names), []).append(e)
    return [_line(path, errs, model) for path, errs in grouped.items()]


def one_line(err: ValidationError, model: type[BaseModel] | None = None,
             names: dict[str, str] | None = None) -> str:
    return "; ".join(lines(err, model, names))


def did_you_mean(given: Any, candidates) -> str:
    """' (did you mean 'x'?)' for the closest candidate, '' when none is close."""
    if not isinstance(given, str):
        return ""
    others = [str(c) for c in candidates if str(c) != given]
    close = difflib.get_close_matches(given, others, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _path(loc: tuple, names: dict[str, str] | None) -> str:
    """The key's path as every message writes it (config/paths.py), a flag for a top key."""
    keys = _keys(loc)
    if keys and not isinstance(keys[0], int):
        keys[0] = (names or {}).get(keys[0], keys[0])
    return show(keys)


def _keys(loc: tuple) -> list:
    return [p for p in loc if isinstance(p, int) or not _FRAME.search(str(p))]


def _line(path: str, errs: list[dict], model: type[BaseModel] | None) -> str:
    where = f"{path}: " if path else ""
    first = errs[0]
    given = first.get("input")
    if first["type"] == "extra_forbidden":
        *parent, key = _keys(first["loc"])
        allowed = _fields_at(model, parent)
        hint = (did_you_mean(key, allowed) or _one_level_down(key, model, parent)) if allowed \
            else ""
        listed = f"; allowed here: {', '.join(sorted(allowed))}" if allowed else ""
        return f"{where}unknown key{hint or listed}"
    if first["type"] == "missing":
        return f"{where}required, missing"
    messages = list(dict.fromkeys(_message(e) for e in errs))
    if len(messages) > 1 and all(m.startswith("must be ") for m in messages):
        messages = ["must be " + " or ".join(m.removeprefix("must be ") for m in messages)]
    # the value, unless the message quotes it already (our validators' `unknown model 'x'`)
    shown = "" if isinstance(given, (dict, list)) or (
        isinstance(given, str) and any(repr(given) in m for m in messages)) \
        else f" (got {_short(repr(given))})"
    hint = ""
    for e in errs:
        if "did you mean" not in e["msg"]:  # a validator of ours may have said it already
            hint = hint or did_you_mean(given, _candidates(e))
    return f"{where}{' or '.join(messages)}{shown}{hint}"


def _message(e: dict) -> str:
    msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if e["type"] == "literal_error":
        expected = str(e.get("ctx", {}).get("expected", ""))
        return f"must be {'one of ' if ' or ' in expected else ''}{expected}".rstrip()
    return re.sub(r"^Input should be ", "must be ", msg)


def _candidates(e: dict) -> list[str]:
    """Names the message offers (`'scratch', 'frozen' or 'knn'`, `['a', 'b']`)."""
    text = str(e.get("ctx", {}).get("expected", "")) + " " + e["msg"]
    return re.findall(r"'([^']+)'", text)


def _fields_at(model: type[BaseModel] | None, loc: list) -> list[str]:
    """The keys allowed at `loc` under `model`, when the path leads to one model class."""
    node: Any = model
    for part in loc:
        node = _descend(node, part)
        if node is None:
            return []
    node = _model_of(node)
    return list(node.model_fields) if node is not None else []


def _one_level_down(key: str, model, parent: list) -> str:
    """`epochs` at the top: did you mean 'training.epochs'? (a key of a block right below)."""
    for field in _fields_at(model, parent):
        if key in _fields_at(model, [*parent, field]):
            return f"; did you mean {field + '.' + key!r}?"
    return ""


def _descend(node: Any, part) -> Any:
    node = _unwrap(node)
    if isinstance(part, int):
        args = typing.get_args(node)
        return args[0] if typing.get_origin(node) in (list, tuple) and args else None
    model = _model_of(node)
    if model is not None and part in model.model_fields:
        return model.model_fields[part].annotation
    if typing.get_origin(node) is dict:
        return typing.get_args(node)[1]
    return None


def _unwrap(node: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X (a union of several models stays)."""
    while True:
        if typing.get_origin(node) is typing.Annotated:
            node = typing.get_args(node)[0]
            continue
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if typing.get_origin(node) in (typing.Union, types.UnionType)\
                and len(args) == 1:
            node = args[0]
            continue
        return node


def _model_of(node: Any) -> type[BaseModel] | None:
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return node
    models = [a for a in typing.get_args(node) if isinstance(a, type) and issubclass(a, BaseModel)]
    return models[0] if len(models) == 1 else None


def _short(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"
