"""What a suite says about the paper it reproduces: its published figures and its deviations.

`published` holds the figures a paper reported per (model, strategy) together with the split
protocol they came from, so a hold-out figure is never put beside a k-fold mean. `deviations`
lists every place where the suite departs from the paper (what the paper says, what we do,
why); a suite with published figures must declare them (an empty list when there are none).
`value_flags` finds published values that cannot all be true, by arithmetic, so the report
shows them as flags instead of comparing our numbers with them.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from mribench.config.strict import Strict
from mribench.errors import UserError

Protocol = Literal["official", "holdout", "kfold"]
_BOUNDED = ("accuracy", "precision", "recall", "f1", "roc_auc", "balanced_accuracy")


class PublishedResult(Strict):
    """Numbers a paper reported for one (model, strategy), shown beside ours by `report`."""
    model: str = Field(description="A model of the suite, by label or name.")
    strategy: str = Field(description="A strategy of the suite, by label or name.")
    protocol: Protocol = Field(
        description="The split protocol the paper measured them with; must be the suite's.")
    values: dict[str, float] = Field(
        min_length=1, description="Metric name as logged -> the paper's value.")
    source: str = Field("", description="Where in the paper (table, figure).")


class Deviation(Strict):
    """One place where the suite departs from its paper."""
    topic: str = Field(min_length=1, description="What the deviation is about, e.g. head or learning rate.")
    paper: str = Field(min_length=1, description="What the paper says (or that it says nothing).")
    ours: str = Field(min_length=1, description="What the suite does.")
    why: str = Field(min_length=1, description="Why.")


def check_published(published: list[PublishedResult], deviations: list[Deviation] | None,
                    protocols: list[str]) -> None:
    """Schema rules: published figures come with declared deviations and the suite's protocol."""
    if published and deviations is None:
        raise UserError("a suite with published figures must declare how it departs from the "
                         "paper in a 'deviations:' list of {topic, paper, ours, why} "
                         "('deviations: []' when it does not)")
    for i, p in enumerate(published):
        if protocols != [p.protocol]:
            raise UserError(f"published[{i}] ({p.model} / {p.strategy}) was measured with "
                             f"protocol {p.protocol!r} but the suite splits with {protocols}: "
                             "hold-out, k-fold and official-split figures are not comparable; "
                             "put it in a suite with that protocol")


def _rounding(value: float) -> float:
    """Half a unit of the last decimal the value was written with (at least two decimals, as
    in a percentage printed without decimals): Study D's .92 stands for [.915, .925]."""
    text = repr(float(value))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 2
    return 0.5 * 10.0 ** -max(decimals, 2)


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def value_flags(p: PublishedResult) -> list[dict]:
    """Published values that contradict each other or their range, each with the reason.
    Each value is taken as the interval its rounding allows, so a flag is never a rounding
    artefact."""
    flags = []
    eps = 1e-12

    def flag(metric: str, kind: str, why: str) -> None:
        flags.append({"model": p.model, "strategy": p.strategy, "metric": metric,
                      "value": p.values[metric], "flag": kind, "why": why})

    for metric, value in p.values.items():
        base = re.sub(r"^test_(clean_)?", "", metric)
        if base.startswith(_BOUNDED) and not 0 <= value <= 1:
            flag(metric, "impossible", f"{value} lies outside [0, 1]")
    for metric in p.values:
        m = re.fullmatch(r"(.*)precision(.*)", metric)
        if not m:
            continue
        recall, f1 = f"{m[1]}recall{m[2]}", f"{m[1]}f1{m[2]}"
        if recall not in p.values or f1 not in p.values:
            continue
        prec, rec, f = p.values[metric], p.values[recall], p.values[f1]
        dp, dr, df = _rounding(prec), _rounding(rec), _rounding(f)
        # the harmonic mean grows with both arguments: its interval comes from the corners
        low, high = _harmonic(prec - dp, rec - dr), _harmonic(prec + dp, rec + dr)
        if f - df > max(prec + dp, rec + dr) + eps:
            flag(f1, "impossible", f"F1 {f} is above both precision {prec} and recall {rec}; F1 "
                 "is their harmonic mean (and any per-class average of F1 stays below the "
                 "larger of the averaged precision and recall)")
        elif f + df < low - eps or f - df > high + eps:
            flag(f1, "inconsistent", f"F1 {f} but precision {prec} and recall {rec} give "
                 f"{_harmonic(prec, rec):.4f} (within rounding {low:.4f}-{high:.4f}); only a "
                 "per-class average could differ that much")
    best = p.values.get("test_best_epoch_accuracy_peeking")
    final = p.values.get("test_last_epoch_accuracy", p.values.get("test_accuracy"))
    if best is not None and final is not None and \
            best + _rounding(best) < final - _rounding(final) - eps:
        flag("test_best_epoch_accuracy_peeking", "inconsistent",
             f"best accuracy over epochs {best} is below the final accuracy {final}")
    return flags


def deviation_rows(deviations: list[Deviation] | None) -> list[dict]:
    """The suite's declared deviations as table rows (the report prints them)."""
    return [d.model_dump() for d in deviations or []]


def flag_rows(published: list[PublishedResult]) -> list[dict]:
    """Every flagged published value of the suite, as table rows."""
    return [f for p in published for f in value_flags(p)]
