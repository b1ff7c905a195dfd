"""One registry shape for datasets and models (torchvision's `models/_api.py`, timm's
`_registry.py`): a dict by name, `register` refusing a second entry of one name, and `find`
raising one `UnknownName` that lists what exists."""
from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from mribench.errors import UnknownName


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(dict[str, T], Generic[T]):
    def __init__(self, kind: str, listed: str = "known") -> None:
        super().__init__()
        self.kind, self.listed = kind, listed  # the words error messages use

    def register(self, spec: T) -> T:
        if spec.name in self:
            raise ValueError(f"{self.kind} {spec.name!r} registered twice")
        self[spec.name] = spec
        return spec

    def find(self, name: str) -> T:
        if name not in self:
            import difflib

            close = difflib.get_close_matches(str(name), list(self), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownName(f"unknown {self.kind} {name!r}{hint}; {self.listed}: "
                              f"{sorted(self)}")
        return self[name]
