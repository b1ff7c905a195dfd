"""Suite `axes:` any config value as one more matrix axis.

    axes:
      datasets[*].train_per_class: [10, 25, 100, {value: all, only: {strategy: [knn]}}]
      preprocess.image_size: [64, 128]

Each key is a path into the suite (config/paths.py: `key`, `key[i]` or `key[*]` for every item
of a list, joined by dots), each value a list of the values it takes. The matrix crosses every
combination with the usual axes (dataset x model x strategy x seed x fold). A combination is a
*variant* of the suite: its values written into the suite's own data and the result validated by
the same pydantic models as the suite itself, so a value the base config would refuse is refused
here too, before anything runs. `only:` restricts a value to some strategies and/or models (by
name or label), e.g. the largest training sizes to the protocols that are cheap there.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from mribench.config import paths, problems
from mribench.config.paths import SETTING, NoMatch, tag_safe
from mribench.config.strict import Strict
from mribench.errors import UserError

# the blocks a cell's config comes from: what an axis may vary (seeds are an axis already)
AXIS_ROOTS = ("datasets", "split", "preprocess", "augment", "training", "models", "strategies",
              "explain")


class AxisOnly(Strict):
    strategy: list[str] | None = None  # strategy names or labels
    model: list[str] | None = None  # model names or labels


class AxisValue(Strict):
    value: Any
    only: AxisOnly | None = None


class Axis(Strict):
    path: str
    values: list[AxisValue] = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _path_syntax(cls, path: str) -> str:
        segments = path.split(".")
        for seg in segments:
            if not SETTING.match(seg):
                raise UserError(f"axis path {path!r}: {seg!r} is not `key`, `key[i]` or "
                                 "`key[*]`")
        root = SETTING.match(segments[0])["key"]
        if root not in AXIS_ROOTS:
            raise UserError(f"axis path {path!r}: must start with one of {list(AXIS_ROOTS)} "
                             "(seeds are an axis already)")
        if SETTING.match(segments[-1])["index"] is not None or len(segments) < 2:
            raise UserError(f"axis path {path!r}: must end at a setting, e.g. "
                             "training.lr or datasets[*].train_per_class")
        return path

    @model_validator(mode="after")
    def _distinct(self):
        shown = [repr(v.value) for v in self.values]
        if len(set(shown)) != len(shown):
            raise UserError(f"axis {self.path}: a value is listed twice ({shown})")
        return self

    @property
    def name(self) -> str:
        """The setting's own name, as cells are labelled by: `train_per_class`, `lr`."""
        return paths.parse(self.path)[-1]


def parse_axes(value: dict[str, list[Any]]) -> list[Axis]:
    """{path: [v, {value: v, only: ...}]} -> [Axis]; a bare value is {value: v}. An error names
    the axis: `axes.training.lr: ...`."""
    out = []
    for path, values in value.items():
        entries = [v if isinstance(v, dict) and "value" in v else {"value": v} for v in values]
        try:
            out.append(Axis(path=path, values=entries))
        except ValidationError as err:
            raise UserError(f"axes.{path}: {_problems(err)}") from None
    return out


def labels(axes: list[Axis]) -> list[str]:
    """The name each axis is shown by: its setting's name, or the whole path when two axes
    share that name, written tag-safe (MLflow refuses `[`, `]` and `*` in tag names):
    `datasets[0].near_bits` -> `datasets.0.near_bits`, `datasets[*].x` -> `datasets.x`."""
    names = [a.name for a in axes]
    return [a.name if names.count(a.name) == 1 else tag_safe(a.path) for a in axes]


def indexed_items(axes: list[Axis]) -> list[tuple[str, str]]:
    """(axis path, list) of the axes that set one item of a list the matrix crosses
    (`datasets[1].near_bits`, `strategies[1].k`): the cells of the other items do not take
    their values, so every value repeats those cells."""
    out = []
    for a in axes:
        root, item = paths.parse(a.path)[:2]
        if root in ("datasets", "models", "strategies") and isinstance(item, int):
            out.append((a.path, root))
    return out


def check_only(axes: list[Axis], strategies: set[str], models: set[str]) -> None:
    for axis in axes:
        for i, entry in enumerate(axis.values):
            only = entry.only or AxisOnly()
            for kind, named, declared in (("strategy", only.strategy, strategies),
                                          ("model", only.model, models)):
                unknown = sorted(set(named or []) - declared)
                if unknown:
                    raise UserError(f"axes.{axis.path}[{i}].only.{kind} names {unknown}, which "
                                     f"the suite does not declare (declared: {sorted(declared)})")


def base_valid(suite) -> bool:
    """Whether the suite is valid without its axes: when it is not, its own validators say
    where (an axis value is not to blame)."""
    try:
        type(suite).model_validate(suite.model_dump(exclude={"axes"}))
    except ValidationError:
        return False
    return True


def check(suite) -> None:
    """Each axis value alone, written into the suite and validated: an error names the axis
    entry (`axes.training.lr[2]`) and the setting that refused it. Then every combination."""
    base = suite.model_dump(exclude={"axes"})
    for axis in suite.axis_list:
        for i, entry in enumerate(axis.values):
            data = copy.deepcopy(base)
            try:
                paths.write(data, axis.path, entry.value)
                type(suite).model_validate(data)
            except ValidationError as err:
                raise UserError(f"axes.{axis.path}[{i}] = {entry.value!r}: "
                                 + _problems(err, type(suite))) from None
            except NoMatch as err:
                raise UserError(f"axes.{axis.path}: matches no setting ({err})") from None
            except paths.PathError as err:
                raise UserError(f"axes.{axis.path}[{i}]: {err}") from None
    variants(suite)


def variants(suite) -> list[tuple[tuple[tuple[str, Any], ...], tuple[AxisValue, ...], Any]]:
    """Every combination of axis values: (((label, value), ...), the entries, the suite with
    those values written in), each variant validated like the suite itself."""
    axes = suite.axis_list
    names = labels(axes)
    base = suite.model_dump(exclude={"axes"})
    out = []
    for combo in itertools.product(*(a.values for a in axes)):
        data = copy.deepcopy(base)
        # suite-level blocks first: a dataset's unset block starts from the suite's (_INHERITED),
        # so that must already hold this variant's values
        for axis, entry in sorted(zip(axes, combo), key=lambda pair: pair[0].path.startswith(
                "datasets")):
            paths.write(data, axis.path, entry.value)
        try:
            variant = type(suite).model_validate(data)
        except ValidationError as err:
            raise UserError(_describe(err, axes, combo, type(suite))) from None
        out.append((tuple(zip(names, (e.value for e in combo))), combo, variant))
    return out


def allowed(entries: tuple[AxisValue, ...], strategy, model) -> bool:
    """Whether a cell of this strategy and model takes these axis values (their `only:`)."""
    for entry in entries:
        if entry.only is None:
            continue
        if entry.only.strategy is not None and not (
                {strategy.name, strategy.display} & set(entry.only.strategy)):
            return False
        if entry.only.model is not None and not ({model.name, model.display}
                                                 & set(entry.only.model)):
            return False
    return True


def _describe(err: ValidationError, axes: list[Axis], combo, model=None) -> str:
    """One line: the axis values, the YAML path that refused them and why."""
    values = ", ".join(f"{a.path} = {e.value!r}" for a, e in zip(axes, combo))
    return f"axes ({values}): {_problems(err, model)}"


def _problems(err: ValidationError, model=None) -> str:
    """The problems in one line, worded as everywhere else (config/problems.py)."""
    return problems.one_line(err, model)
