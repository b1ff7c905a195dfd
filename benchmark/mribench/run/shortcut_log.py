"""What a cell logs of the shortcut audit of its split (data/shortcuts.py) and of each test
image's provenance: `data/shortcut_audit.json`, the verdict as a tag and a warning line, the
metadata-only baseline's test accuracy as metrics (beside the model's in the report), and the
`source` and `size` columns of metrics/predictions.csv that the report's slices group by."""
from __future__ import annotations

import pandas as pd

from mribench import tracking
from mribench.data.preparation import SLICED
from mribench.data.store import warn
from mribench.run import layout


def log(prepared, with_test: bool) -> None:
    audit = prepared.shortcuts
    if not audit or not with_test:  # a tuning trial logs nothing about the test split
        return
    tracking.log_dict(audit, layout.SHORTCUT_AUDIT)
    tracking.set_tags({"shortcut_verdict": "warning" if audit["warning"] else "none found"})
    if audit["warning"]:
        warn(audit["warning"], once=f"shortcuts {prepared.name} {prepared.digest()}")
    base = audit["baseline"]
    for subset in (layout.TEST, layout.TEST_CLEAN):
        if subset in base:
            tracking.log_metrics({f"metadata_baseline_{subset}_accuracy": base[subset]["accuracy"],
                                  f"metadata_baseline_{subset}_balanced_accuracy":
                                      base[subset]["balanced_accuracy"],
                                  f"metadata_baseline_{subset}_chance": base[subset]["chance_accuracy"]})


def annotate(frame: pd.DataFrame, prepared, samples) -> pd.DataFrame:
    """The predictions with each image's source and original size (when known)."""
    facts = [prepared.facts.get(s.path) for s in samples]
    if not facts or any(f is None for f in facts):
        return frame
    return frame.assign(**{key: [f[key] for f in facts] for key in SLICED})
