"""The severity table: what each artefact at severity 1..5 means, in TorchIO's parameters.

Every range TorchIO would sample from is fixed to one value by the severity (given here as that
value; corrupt.py passes it as (v, v)), so a severity is one transform, not a distribution.
Motion is `symmetric`: one fixed value would make every movement the same, so there the severity
bounds TorchIO's range, (-v, v). The bias field is `scaled`: its polynomial's shape is drawn
(TorchIO's RandomBiasField sampling, every coefficient U(-1, 1), the constant term dropped) and
the severity sets its strength as the ratio of the field's 95th to 5th percentile over the head
(pixels above a tenth of the image's maximum), centred so the head's mean log-brightness stays;
TorchIO's BiasField then applies exactly that field. Bounding the raw coefficients instead
(RandomBiasField(coefficients=(-v, v), order=3), table version 1) left the strength to the
draw: at severity 5, over the heads of 24 7023 test images, a max / min ratio from 2.2x to 54x
times a global brightness factor from 0.46 to 1.9 (the constant term; bright parts clipped),
with the extremes on the head's rim (the docs' meningioma slice, 7.5x by max / min, looked
nearly clean), so one image was barely shaded and the next washed out.
What stays random is what TorchIO draws besides the ranges (where a spike sits in k-space, the
timing of the motion, which axis ghosts, the noise itself, the bias field's shape); corrupt.py
seeds it from the image's content hash, so every model sees the same corrupted pixels.
Intensities are in [0, 1] (uint8 / 255).

Scales were chosen by looking at 7023-set slices at 128 px (`mribench data artefacts`):
severity 1 is barely visible, 5 is plainly degraded with the anatomy still recognisable.
Any change to a value, or to how corrupt.py applies one, must bump VERSION: the corrupted-image
cache and every cell's run_key (config/robustness.py) include it.
"""
from __future__ import annotations

from mribench.errors import UserError

# 3: the bias field as a brightness ratio over the head (order 2) instead of raw coefficients
# (2, for an hour of development, measured that ratio by max / min instead of percentiles)
VERSION = 3
SEVERITIES = (1, 2, 3, 4, 5)

# artefact -> TorchIO transform, the parameter(s) the severity sets (one value per severity),
# and fixed keyword arguments
TABLE: dict[str, dict] = {
    # scaled: ratio = the field's 95th / 5th percentile over the head, 3 ** (s / 5) rounded
    # (evenly spaced in log-brightness: s5 is a 3x coil shading); order 2: one smooth
    # fall-off across the head, as a receive coil's sensitivity, not order 3's wavy patches
    "bias_field": {"transform": "BiasField", "order": 2, "scaled": True,
                   "ratio": (1.25, 1.55, 1.93, 2.41, 3.0)},
    # symmetric: the severity bounds TorchIO's range (-v, v) instead of fixing it (see above)
    "motion": {"transform": "RandomMotion", "num_transforms": 4, "symmetric": True,
               "degrees": (1.0, 2.0, 3.0, 4.5, 6.0),
               "translation": (1.0, 2.0, 3.0, 4.5, 6.0)},  # mm = pixels (spacing 1)
    "ghosting": {"transform": "RandomGhosting", "num_ghosts": 4,
                 "intensity": (0.2, 0.4, 0.6, 0.9, 1.2)},
    "spike": {"transform": "RandomSpike", "num_spikes": 1,
              "intensity": (0.15, 0.3, 0.45, 0.6, 0.8)},
    "noise": {"transform": "RandomNoise", "mean": 0.0,
              "std": (0.015, 0.03, 0.05, 0.075, 0.1)},
    "blur": {"transform": "RandomBlur", "std": (0.4, 0.7, 1.0, 1.4, 1.8)},  # pixels, in-plane
    "gamma": {"transform": "RandomGamma", "log_gamma": (0.1, 0.2, 0.35, 0.5, 0.7)},
}
ARTEFACTS = tuple(TABLE)
_FLAGS = ("transform", "symmetric", "scaled")  # how a row is applied, not TorchIO arguments
# the severity-set parameters of each artefact (the tuples of five values)
GRADED = {name: tuple(k for k, v in row.items() if isinstance(v, tuple)) for name, row in TABLE.items()}


def parameters(artefact: str, severity: int) -> dict:
    """The transform's fixed keyword arguments at this severity (graded ones as single values)."""
    if artefact not in TABLE:
        raise UserError(f"unknown artefact {artefact!r}; known: {list(ARTEFACTS)}")
    if severity not in SEVERITIES:
        raise UserError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    row = TABLE[artefact]
    return {k: (v[severity - 1] if isinstance(v, tuple) else v)
            for k, v in row.items() if k not in _FLAGS}


def table_rows() -> list[dict]:
    """The table as rows (artefact, TorchIO transform, parameter, severity 1..5), for the docs
    and `mribench data artefacts --json`."""
    rows = []
    for name, row in TABLE.items():
        fixed = ", ".join(f"{k}={v}" for k, v in row.items()
                          if k not in _FLAGS and not isinstance(v, tuple))
        for key in GRADED[name]:
            rows.append({"artefact": name, "transform": row["transform"], "parameter": key,
                         "range": ("drawn shape scaled to v" if row.get("scaled") else
                                   "(-v, v)" if row.get("symmetric") else "(v, v)"),
                         **{f"s{s}": row[key][s - 1] for s in SEVERITIES}, "fixed": fixed})
    return rows
