"""The head language of a suite: head types (`models[].head.type`) and the layer list of a
`layers` head, parsed without torch.

The schema validates a head with it when a suite loads (config/network.py) and models/heads.py
builds the modules from the same parse, so the two cannot disagree about what a layer is.
"""
from __future__ import annotations

from typing import Any, Literal, get_args

from mribench.errors import UserError

HeadType = Literal["linear", "gap_mlp", "flatten_mlp", "conv_gap_mlp", "layers"]
HEAD_TYPES: tuple[str, ...] = get_args(HeadType)
LAYER_NAMES = ("gap", "flatten", "batchnorm", "relu")  # layers without a value
LAYER_VALUES = ("dropout", "dense", "conv")  # layers with one: {dropout: p}, {dense: n}, ...


def parse_layers(raw: Any) -> list[tuple[str, dict]]:
    """A `layers` head's YAML list as [(kind, options)]; ValueError naming `layers[i]`.

    The schema can call this in a field validator, so a bad layer fails when the suite loads."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise UserError("layers: a non-empty list of head layers, e.g. [gap, {dense: 256}, relu]")
    out = []
    for i, item in enumerate(raw):
        where = f"layers[{i}]"
        if isinstance(item, str):
            if item not in LAYER_NAMES:
                hint = f" (write {{{item}: VALUE}})" if item in LAYER_VALUES else ""
                raise UserError(f"{where}: unknown layer {item!r}{hint}; layers are "
                                 f"{', '.join(LAYER_NAMES)}, or {{dropout: p}}, {{dense: n}}, "
                                 "{conv: n}")
            out.append((item, {}))
            continue
        if not isinstance(item, dict) or not item:
            raise UserError(f"{where}: a layer name or a one-key mapping, got {item!r}")
        kinds = [k for k in item if k in LAYER_VALUES]
        extra = sorted(set(item) - set(kinds) - ({"kernel"} if kinds == ["conv"] else set()))
        if len(kinds) != 1 or extra:
            raise UserError(f"{where}: one of {{dropout: p}}, {{dense: n}}, {{conv: n[, kernel: k]}}"
                             f", got {item!r}")
        kind = kinds[0]
        value = item[kind]
        if kind == "dropout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise UserError(f"{where}.dropout: a rate in [0, 1), got {value!r}")
            out.append((kind, {"p": float(value)}))
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{where}.{kind}: a positive whole number of units, got {value!r}")
        options = {"units": value}
        if kind == "conv":
            kernel = item.get("kernel", 3)
            if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
                raise UserError(f"{where}.kernel: an odd positive kernel size ('same' padding), "
                                 f"got {kernel!r}")
            options["kernel"] = kernel
        out.append((kind, options))
    return out
