"""YAML loading that refuses duplicate keys.

PyYAML keeps the last of two equal keys, so a second `training:` block silently replaced the
first; suites are strict, so a duplicate is an error naming both lines. Merge keys (`<<`) keep
their YAML meaning: explicit keys may override merged ones.
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


def load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)


def read_file(path: Path) -> Any:
    try:
        return load(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as err:
        raise FileError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise FileError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        bad = err.object[err.start:err.start + 1]
        raise FileError(f"{path}: not UTF-8 text (byte {err.start} is {bad!r}); save it as "
                        "UTF-8") from None
    except OSError as err:
        raise FileError(f"{path}: cannot be read ({err.strerror or err})") from None
