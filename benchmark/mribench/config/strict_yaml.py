"""YAML loading that refuses duplicate keys and alias bombs.

PyYAML keeps the last of two equal keys, so a second `training:` block silently replaced the
first; suites are strict, so a duplicate is an error naming both lines. Merge keys (`<<`) keep
their YAML meaning: explicit keys may override merged ones.

Anchors and aliases are references: nine lines of nested aliases ("billion laughs") stand for
10^9 values, cheap to load but expanded in full by whatever walks them (validation, an axis
crossing its values). The document's size with every alias expanded is counted on the node
graph before anything is built (linear in the text) and refused over MAX_NODES.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mribench.errors import UserError


class DuplicateKeyError(yaml.YAMLError):
    pass


class FileError(UserError):
    """A YAML file that cannot be used; the message names it and says why."""


class StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it
            line = key_node.start_mark.line + 1
            if first is not None:
                raise DuplicateKeyError(f"duplicate key {key!r} on lines {first} and {line} "
                                        "(YAML would keep only the last); keep one")
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


MAX_NODES = 100_000  # the largest shipped suite has a few hundred


class TooLarge(yaml.YAMLError):
    pass


def load(text: str) -> Any:
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    except RecursionError:
        raise TooLarge("nested too deeply to be a suite: refused") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """The node count with every alias expanded; TooLarge past MAX_NODES or on a cycle."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise TooLarge(f"a recursive alias (line {node.start_mark.line + 1}); write the values out")
    open_.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_)
                    for k, v in node.value)
    open_.discard(id(node))
    if size > MAX_NODES:
        raise TooLarge(f"the aliases expand to over {MAX_NODES} values (from line "
                       f"{node.start_mark.line + 1}); a suite is far smaller: refused")
    sizes[id(node)] = size
    return size


def read_file(path: Path) -> Any:
    if path.exists() and not path.is_file():  # a FIFO would block the read for ever
        raise FileError(f"{path}: not a regular file; name a YAML file")
    try:
        return load(path.read_text(encoding="utf-8"))
    except (DuplicateKeyError, TooLarge) as err:
        raise FileError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise FileError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        bad = err.object[err.start:err.start + 1]
        raise FileError(f"{path}: not UTF-8 text (byte {err.start} is {bad!r}); save it as "
                        "UTF-8") from None
    except OSError as err:
        raise FileError(f"{path}: cannot be read ({err.strerror or err})") from None
