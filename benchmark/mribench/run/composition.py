"""What a cell's scored test subsets hold: images per class, duplicate groups, baselines, and
the warning when a subset lacks a class or holds few images of one (stats/composition.py)."""
from __future__ import annotations

import numpy as np

from mribench.stats import composition

NAMES = {"test": "test", "test_clean": "clean test"}


def subsets(prepared) -> dict[str, np.ndarray]:
    """Scored subsets of the test split as masks over prepared.splits["test"]: the whole test
    split, and its clean part when the dataset was deduplicated and any image is left."""
    samples = prepared.splits["test"]
    out = {"test": np.ones(len(samples), dtype=bool)}
    if prepared.clean_test is not None:
        kept = {s.path for s in prepared.clean_test}
        clean = np.array([s.path in kept for s in samples], dtype=bool)
        if clean.any():
            out["test_clean"] = clean
    return out


def describe(prepared) -> dict[str, dict]:
    """Per subset: images, duplicate groups, images per class and the two baselines."""
    labels = np.array([s.label for s in prepared.splits["test"]], dtype=int)
    groups = np.asarray(prepared.test_groups or [str(s.path) for s in prepared.splits["test"]])
    out = {}
    for name, mask in subsets(prepared).items():
        per_class = composition.counts(labels[mask], prepared.classes)
        out[name] = {"images": int(mask.sum()), "groups": int(len(set(groups[mask]))),
                     "group_kind": prepared.audit.get("test_group_kind") if prepared.audit
                     else None, "classes": per_class, **composition.baselines(per_class)}
    return out


def split_note(prepared) -> str:
    """`test 394 images in 380 groups (glioma 100, ...); clean test 135 in 92 groups (...)`,
    for the console's split line."""
    return "; ".join(f"{NAMES[name]} {d['images']} images in {d['groups']} groups "
                     f"({composition.mix(d['classes'])}), majority baseline "
                     f"{d['majority_baseline']:.3f}"
                     for name, d in describe(prepared).items())


def warnings(prepared, dataset: str) -> list[str]:
    """One line per subset that lacks a class or holds fewer than FEW_IMAGES of one."""
    out = []
    for name, d in describe(prepared).items():
        line = composition.warning(f"{dataset} {NAMES[name]}", d["classes"])
        if line:
            out.append(line)
    return out


def logged_metrics(prepared) -> dict[str, float]:
    """Baselines and group counts of every subset, as flat metrics ({subset}_groups, ...)."""
    out = {}
    for name, d in describe(prepared).items():
        out |= composition.logged(name, d["classes"], d["groups"])
    return out
