"""The report's robustness part: each configuration under MRI artefacts, from the cells'
robustness/predictions.csv (robustness/evaluate.py), on the same subset as the clean-test
sections (the clean test subset when the runs have it, else the full test set).

- mCA per configuration with the two-level interval (test images and seeds resampled together,
  stats.two_level_bootstrap over each image's correctness averaged over every artefact and
  severity), for both subsets, added to the configurations table;
- accuracy per artefact and severity with the same interval (severity 0: uncorrupted);
- ImageNet-C's corruption errors against the suite's reference configuration:
  CE_a = sum_s E_{s,a} / sum_s E^ref_{s,a}, mCE = mean_a CE_a, and the relative version with
  the uncorrupted error subtracted on both sides, relative CE_a = sum_s (E_{s,a} - E_clean) /
  sum_s (E^ref_{s,a} - E^ref_clean); E = 1 - accuracy, means over seeds;
- the paired configuration test (stats.configurations.compare_configurations, which takes 0/1
  correctness) per artefact and severity, Holm-adjusted over all pairs, artefacts, severities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from mribench import stats, tracking
from mribench.run import layout
from mribench.stats.compare import correctness, group_vector, seed_matrix
from mribench.stats.configurations import compare_configurations


@dataclass
class Robustness:
    subset: str  # clean or full
    artefacts: list[str]
    severities: list[int]
    curves: list[dict] = field(default_factory=list)  # config, artefact, severity, mean, ci
    table: list[dict] = field(default_factory=list)  # one row per configuration
    pairs: list[dict] = field(default_factory=list)


def _predictions(run_id: str) -> pd.DataFrame | None:
    return tracking.load_predictions(run_id, layout.ROBUST_PREDICTIONS)


def _matrix(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """[seeds, files] of the `value` column."""
    return seed_matrix(parts)


def _correct(frame: pd.DataFrame, subset: str) -> pd.DataFrame:
    """artefact, severity, file, correct (0/1) on the subset."""
    frame = layout.in_subset(frame, subset)
    # duplicate group of the test image (older runs have none: each image its own group)
    group = frame["group"] if "group" in frame else frame["file"]
    return pd.DataFrame({"artefact": frame["artefact"], "severity": frame["severity"].astype(int),
                         "file": frame["file"].astype(str), "group": group.astype(str),
                         "correct": (frame["true"] == frame["pred"]).astype(float)})


def _interval(parts) -> dict:
    """Two-level bootstrap resampling seeds and duplicate groups of test images."""
    table = _matrix(parts)
    boot = stats.two_level_bootstrap(table.to_numpy(), groups=group_vector(parts, table.columns))
    return {"mean": boot["mean"], "ci95": [boot["ci95_low"], boot["ci95_high"]],
            "images": boot["images"], "groups": boot["groups"]}


def analyse(results, rows: list[dict], reference: dict | None) -> Robustness | None:
    """Everything the robustness sections show; adds robust[_clean]_mca (+ _ci95) to `rows`.
    None when no run has robustness predictions."""
    loaded = {r: _predictions(r) for r in results.runs["run_id"]}
    if not any(f is not None for f in loaded.values()):
        return None
    frames = [f for f in loaded.values() if f is not None]
    subset = layout.CLEAN if all(layout.has_clean_flags(f) for f in frames) else layout.FULL
    artefacts = list(dict.fromkeys(a for f in frames for a in f["artefact"]))
    severities = sorted({int(s) for f in frames for s in f["severity"]})
    out = Robustness(subset, artefacts, severities)
    by_config: dict[str, dict] = {}
    row_of = {r["config"]: r for r in rows}
    for dataset, name, runs in results.configs():
        runs = [r for _, r in runs.iterrows() if loaded.get(r["run_id"]) is not None]
        if not runs:
            continue
        for which in layout.SUBSETS:  # the configurations table shows both subsets
            if which == "clean" and subset != "clean":
                continue
            parts = [(r["seed"], _correct(loaded[r["run_id"]], which)
                      .groupby(["file", "group"], as_index=False)["correct"].mean()
                      .rename(columns={"correct": "value"})) for r in runs]
            if all(len(p) for _, p in parts) and name in row_of:
                mca = _interval(parts)
                key = "robust_clean_mca" if which == "clean" else "robust_mca"
                row_of[name] |= {key: mca["mean"], f"{key}_ci95": mca["ci95"],
                                 f"{key}_images": mca["images"], f"{key}_groups": mca["groups"]}
        long = [(r["seed"], _correct(loaded[r["run_id"]], subset)) for r in runs]
        base = [(r["seed"], correctness(results.load(r["run_id"]), subset)) for r in runs]
        by_config[name] = {"dataset": dataset, "long": long, "row": row_of.get(name, {}),
                           "axes": runs[0].get("axes")}
        # severity 0: the uncorrupted test (metrics/predictions.csv), the same for every panel
        point = (_interval([(s, b.assign(value=b["correct"])) for s, b in base])
                 if all(b is not None and len(b) for _, b in base) else None)
        for artefact in artefacts:
            if point is not None:
                out.curves.append({"config": name, "artefact": artefact, "severity": 0, **point})
            for k in severities:
                parts = [(s, f[(f["artefact"] == artefact) & (f["severity"] == k)]
                          .rename(columns={"correct": "value"})) for s, f in long]
                if all(len(p) for _, p in parts):
                    out.curves.append({"config": name, "artefact": artefact, "severity": k,
                                       **_interval(parts)})
    out.table = _table(out, by_config, reference)
    out.pairs = _pairs(out, by_config)
    return out


def _errors(curves: list[dict], config: str, artefact: str) -> tuple[list[float], float | None]:
    """Errors at each severity (ascending) and the uncorrupted error, from the curve points."""
    points = {c["severity"]: 1 - c["mean"] for c in curves
              if c["config"] == config and c["artefact"] == artefact}
    return [v for s, v in sorted(points.items()) if s > 0], points.get(0)


def _hurts(curves: list[dict], config: str, artefact: str) -> bool:
    """Whether the artefact measurably lowers the configuration's accuracy: at some severity the
    95% interval of its corrupted accuracy lies wholly below its uncorrupted accuracy."""
    points = {c["severity"]: c for c in curves
              if c["config"] == config and c["artefact"] == artefact}
    clean = points.get(0)
    return clean is not None and any(p["ci95"][1] < clean["mean"]
                                     for s, p in points.items() if s > 0)


def _reference_for(c: dict, by_config: dict, reference: dict | None) -> str | None:
    """The reference configuration a configuration is normalised by: the reference model and
    strategy on the same dataset at the same axis values (a suite with `axes:` has one per
    training size, image size, ...; mixing them would make mCE measure the axis too)."""
    if not reference:
        return None
    return next((n for n, r in by_config.items() if r["dataset"] == c["dataset"]
                 and r["row"].get("model") == reference["model"]
                 and r["row"].get("strategy") == reference["strategy"]
                 and _same(r.get("axes"), c.get("axes"))), None)


def _same(a, b) -> bool:
    """Two `axes` values (a string, or missing: None / NaN) are the same axis values."""
    return (a if isinstance(a, str) else "") == (b if isinstance(b, str) else "")


def _table(out: Robustness, by_config: dict, reference: dict | None) -> list[dict]:
    table = []
    for name, c in by_config.items():
        row = {"config": name}
        ref = _reference_for(c, by_config, reference)
        ces, rel = [], []
        for artefact in out.artefacts:
            errors, clean = _errors(out.curves, name, artefact)
            row[f"{artefact}_accuracy"] = 1 - float(np.mean(errors)) if errors else None
            if ref is not None and errors:
                ref_errors, ref_clean = _errors(out.curves, ref, artefact)
                ces.append(sum(errors) / sum(ref_errors) if sum(ref_errors) else np.nan)
                if clean is not None and ref_clean is not None:
                    # an artefact that does not measurably hurt the reference has no relative
                    # CE (dividing by a drop of a few images is a ratio of noise, and one below
                    # zero flips the sign): it is left out of the relative mCE, which says over
                    # how many artefacts it ran
                    gap = sum(e - ref_clean for e in ref_errors)
                    if gap > 0 and _hurts(out.curves, ref, artefact):
                        rel.append(sum(e - clean for e in errors) / gap)
        key = "robust_clean_mca" if out.subset == "clean" else "robust_mca"
        row["mca"] = c["row"].get(key)
        row["mca_ci95"] = c["row"].get(f"{key}_ci95")
        row["images"], row["groups"] = c["row"].get(f"{key}_images"), c["row"].get(f"{key}_groups")
        if ces:
            row["mce"] = float(np.mean(ces))
        if rel:
            row["relative_mce"] = float(np.mean(rel))
            row["relative_mce_artefacts"] = len(rel)
        if ref is not None:
            row["reference"] = ref
        table.append(row)
    return table


def _pairs(out: Robustness, by_config: dict) -> list[dict]:
    """compare_configurations for every pair on one dataset, per artefact and severity (the
    test takes 0/1 correctness per image, so each severity is its own test), Holm over all."""
    pairs = []
    names = sorted(by_config)
    for a, b in combinations(names, 2):
        if by_config[a]["dataset"] != by_config[b]["dataset"]:
            continue
        for artefact in out.artefacts:
            for k in out.severities:
                mats = [_matrix([(s, f[(f["artefact"] == artefact) & (f["severity"] == k)]
                                  .rename(columns={"correct": "value"}))
                                 for s, f in by_config[name]["long"]]) for name in (a, b)]
                files = sorted(set(mats[0].columns) & set(mats[1].columns))
                row = {"a": a, "b": b, "artefact": artefact, "severity": k}
                try:
                    groups = group_vector([(s, f) for s, f in by_config[a]["long"]], files)
                    test = compare_configurations(mats[0][files].to_numpy(),
                                                  mats[1][files].to_numpy(), groups=groups)
                except ValueError as err:  # e.g. seeds that scored different images (hold-out)
                    pairs.append(row | {"error": str(err)})
                    continue
                pairs.append(row | {key: test[key] for key in (
                    "covers", "images", "groups", "accuracy_a", "accuracy_b", "difference", "ci95",
                    "p_value", "detectable")})
    tested = [p for p in pairs if "p_value" in p]
    for p, adjusted in zip(tested, stats.holm([p["p_value"] for p in tested])):
        p["p_holm"] = adjusted
    return pairs

def _fmt(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def display_table(robust: Robustness) -> list[dict]:
    shown = []
    for row in robust.table:
        out = {"config": row["config"]}
        out |= {a.replace("_", " "): _fmt(row.get(f"{a}_accuracy")) for a in robust.artefacts}
        ci = row.get("mca_ci95")
        out["mCA [95% CI]"] = (f"{_fmt(row.get('mca'))} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci
                               else _fmt(row.get("mca")))
        if row.get("images") is not None:
            out["images"] = f"{row['images']} in {row['groups']} groups"
        if "mce" in row:
            out["mCE"] = _fmt(row["mce"])
            n = row.get("relative_mce_artefacts")
            out["relative mCE"] = _fmt(row.get("relative_mce")) + (
                f" ({n} of {len(robust.artefacts)})" if n and n < len(robust.artefacts) else "")
        shown.append(out)
    return shown


def display_pairs(robust: Robustness) -> list[dict]:
    shown = []
    for p in robust.pairs:
        out = {"artefact": p["artefact"], "severity": p["severity"], "a": p["a"], "b": p["b"]}
        if "error" in p:
            shown.append(out | {"note": p["error"]})
            continue
        out |= {"covers": p["covers"], "images": f"{p['images']} in {p['groups']} groups",
                "accuracy_a": _fmt(p["accuracy_a"]), "accuracy_b": _fmt(p["accuracy_b"]),
                "difference": _fmt(p["difference"], True),
                "ci95": f"[{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]",
                "p_value": f"{p['p_value']:.2g}", "p_holm": f"{p.get('p_holm', np.nan):.2g}",
                "detectable": _fmt(p["detectable"])}
        shown.append(out)
    return shown


def sections(robust: Robustness, folder, save, csv) -> list:
    """The report sections; `save(fig, folder, name)` and `csv(rows, folder, name)` write files
    (report/files.py's helpers)."""
    from mribench.report.artefact_figures import heatmap_figure, severity_figure
    from mribench.report.html import Section

    refs = list(dict.fromkeys(r["reference"] for r in robust.table if "reference" in r))
    # with axes, each configuration has the reference at its own axis values
    ref = (refs[0] if len(refs) == 1 else
           ", ".join(refs) + ": the one at each configuration's own axis values, named in "
           "robustness.csv's reference column") if refs else None
    subset = f"{robust.subset} test"
    out = [Section("Robustness to MRI artefacts", [
        f"Every test image under each artefact at severities {robust.severities} (TorchIO, "
        "docs/robustness.md: the same corrupted images for every configuration), scored on "
        f"the {subset}. Each artefact column is the mean accuracy over its severities; mCA is "
        "the mean over all artefacts and severities, with its 95% interval over test images "
        "and seeds.",
        (f"mCE (ImageNet-C): each artefact's summed error over the severities divided by "
         f"that of the reference configuration ({ref}), averaged over artefacts; below 1 is "
         "more robust than the reference. relative mCE does the same with each "
         "configuration's uncorrupted error subtracted first: how much accuracy the "
         "artefacts cost, not how accurate the model is; an artefact that does not measurably "
         "lower the reference's accuracy (no severity whose 95% interval lies below its "
         "uncorrupted accuracy) has no relative CE and is left out (the column says over how "
         "many artefacts it ran).") if ref else
        "No robustness.reference in the suite: mCE is not computed."],
        table=display_table(robust),
        figure=save(heatmap_figure(robust.table, robust.artefacts, subset), folder,
                    "robustness_heatmap.png"),
        files=[csv(robust.table, folder, "robustness.csv")])]
    out.append(Section("Accuracy against artefact severity", [
        "One panel per artefact, one line per configuration; severity 0 is the uncorrupted "
        "test image. The band is the 95% interval over test images and seeds "
        "(two-level bootstrap), as in the configurations table."],
        figure=save(severity_figure(robust.curves, robust.artefacts, subset), folder,
                    "robustness_severity.png"),
        files=[csv(robust.curves, folder, "robustness_curves.csv")]))
    if robust.pairs:
        out.append(Section(f"Pairwise tests per artefact ({subset})", [
            "The configuration test of the clean-test comparisons (images and seeds), for each "
            "artefact at each severity: difference = accuracy of a minus b; p_holm is adjusted "
            "over every pair, artefact and severity."],
            table=display_pairs(robust), files=[csv(robust.pairs, folder,
                                                     "robustness_pairwise.csv")]))
    return out


def reference_of(suite) -> dict | None:
    """The suite's robustness.reference as the display names the runs are tagged with (a
    dataset's own block first, then the suite's)."""
    blocks = [d.robustness for d in suite.datasets] + [suite.robustness]
    ref = next((b.reference for b in blocks if b is not None and b.reference is not None), None)
    if ref is None:
        return None
    model = next(m.display for m in suite.models if ref.model in (m.display, m.name))
    strategy = next(s.display for s in suite.strategies if ref.strategy in (s.display, s.name))
    return {"model": model, "strategy": strategy}
