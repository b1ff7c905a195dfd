"""The report's calibration and selective-prediction part, from the cells' predictions files
(`prob_<class>` raw, `calibrated_prob_<class>` after the cell's temperature: run/calibrated.py)
and their logged metrics, on the same subset as the clean-test sections.

- a table per configuration: the temperature, ECE / Brier / NLL before and after (means of
  the runs' logged figures), and from the calibrated max probability AURC, E-AURC and the
  accuracy at 80 % and 90 % coverage with the two-level interval (test images and seeds,
  stats.selective.two_level), plus AURC from the entropy;
- risk-coverage curves (one line per configuration, its band) and reliability diagrams before
  and after (each configuration's runs pooled);
- under MRI artefacts (robustness/predictions.csv): per configuration and artefact, AURC and
  the accuracy at 90 % coverage over every corrupted image of all severities, with the same
  interval. A model that knows when an artefact fooled it keeps a low AURC there.
Runs logged before calibration have no calibrated columns and are left out (said in the text).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mribench import tracking
from mribench.run import layout
from mribench.stats import metrics, selective

CAL = "calibrated_prob_"
SHOWN = ("aurc", "eaurc", "accuracy_at_coverage_80", "accuracy_at_coverage_90")


@dataclass
class Calibration:
    subset: str  # clean or full
    table: list[dict] = field(default_factory=list)  # one row per configuration
    curves: list[dict] = field(default_factory=list)  # config, coverage, risk, ci95
    reliability: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    robustness: list[dict] = field(default_factory=list)  # config, artefact, figures
    left_out: int = 0  # runs without calibrated probabilities


def _columns(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in frame.columns if c.startswith(prefix)
            and not (prefix == "prob_" and c.startswith(CAL))]


def _subset(frame: pd.DataFrame, subset: str) -> pd.DataFrame:
    return layout.in_subset(frame, subset)


def unit(frame: pd.DataFrame, score: str = "max_prob") -> tuple[np.ndarray, ...]:
    """(files, confidence from the calibrated probabilities, wrong) of one run's rows."""
    probs = frame[_columns(frame, CAL)].to_numpy(dtype=np.float64)
    return (frame["file"].astype(str).to_numpy(), selective.confidence(probs, score),
            (frame["true"] != frame["pred"]).to_numpy())


def _logged(runs: pd.DataFrame, name: str) -> float | None:
    col = name
    values = pd.to_numeric(runs[col], errors="coerce").dropna() if col in runs else []
    return float(np.mean(values)) if len(values) else None


def _reliability(frames: list[pd.DataFrame], prefix: str) -> pd.DataFrame:
    pooled = pd.concat(frames, ignore_index=True)
    classes = [c[len(prefix):] for c in _columns(pooled, prefix)]
    names = [metrics.safe_name(c) for c in pooled["true"].astype(str)]
    y = np.array([classes.index(n) for n in names])
    return metrics.reliability_table(y, pooled[_columns(pooled, prefix)].to_numpy(np.float64))


def analyse(results, rows: list[dict], n_boot: int = 1000) -> Calibration | None:
    """Everything the calibration sections show; None when no run has calibrated
    probabilities (runs logged before calibration existed)."""
    subset = layout.leading_subset(rows)
    prefix = layout.PREFIXES[subset]
    out = Calibration(subset)
    for _, name, runs in results.configs():
        frames = []
        for _, run in runs.iterrows():
            frame = results.load(run["run_id"])
            if frame is None or not _columns(frame, CAL) or \
                    (subset == layout.CLEAN and not layout.has_clean_flags(frame)):
                out.left_out += 1
                continue
            part = _subset(frame, subset)
            if len(part):
                frames.append(part)
        if not frames:
            continue
        boot = selective.two_level([unit(f) for f in frames], n_boot=n_boot)
        entropy = selective.two_level([unit(f, "entropy") for f in frames], n_boot=n_boot,
                                      grid=())
        row = {"config": name, "runs": len(frames), "temperature": _logged(runs, "temperature")}
        for m in ("ece", "brier", "log_loss"):
            row[f"{m}_raw"] = _logged(runs, f"{prefix}_{m}")
            row[f"{m}_calibrated"] = _logged(runs, f"{prefix}_calibrated_{m}")
        for k in SHOWN:
            row[k], row[f"{k}_ci95"] = boot[k]["mean"], boot[k]["ci95"]
        row["aurc_entropy"], row["aurc_entropy_ci95"] = (entropy["aurc"]["mean"],
                                                         entropy["aurc"]["ci95"])
        out.table.append(row)
        for c in selective.GRID:
            point = boot[f"risk_at_{c:g}"]
            out.curves.append({"config": name, "coverage": float(c), "risk": point["mean"],
                               "ci95": point["ci95"]})
        out.reliability[name] = {"raw": _reliability(frames, "prob_"),
                                 "calibrated": _reliability(frames, CAL)}
        # every image under every severity: five times the rows, half the resamples
        out.robustness += _under_artefacts(name, runs, subset, max(200, n_boot // 2))
    return out if out.table else None


def _under_artefacts(name: str, runs: pd.DataFrame, subset: str, n_boot: int) -> list[dict]:
    """AURC and accuracy at 90 % coverage per artefact (all severities' images together)."""
    frames = []
    for run_id in runs["run_id"]:
        frame = tracking.load_predictions(run_id, layout.ROBUST_PREDICTIONS)
        if frame is None:
            continue
        if _columns(frame, CAL) and (subset == layout.FULL or layout.has_clean_flags(frame)):
            frames.append(_subset(frame, subset))
    out = []
    for artefact in dict.fromkeys(a for f in frames for a in f["artefact"]):
        units = []
        for f in frames:
            mine = f[f["artefact"] == artefact]
            files, conf, wrong = unit(mine)
            # an image at two severities is two cases: keyed by both
            units.append((np.char.add(files.astype(str), "@" + mine["severity"].astype(str)
                                      .to_numpy()), conf, wrong))
        boot = selective.two_level(units, n_boot=n_boot, grid=())
        out.append({"config": name, "artefact": artefact,
                    "severities": sorted(int(s) for s in set(frames[0]["severity"])),
                    **{k: boot[k]["mean"] for k in SHOWN},
                    **{f"{k}_ci95": boot[k]["ci95"] for k in SHOWN}})
    return out


def _fmt(value, ci=None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def display_table(cal: Calibration) -> list[dict]:
    shown = []
    for r in cal.table:
        shown.append({
            "config": r["config"], "runs": r["runs"],
            "T": "-" if r["temperature"] is None else f"{r['temperature']:.3g}",
            "ECE raw -> calibrated": f"{_fmt(r['ece_raw'])} -> {_fmt(r['ece_calibrated'])}",
            "Brier raw -> calibrated": f"{_fmt(r['brier_raw'])} -> {_fmt(r['brier_calibrated'])}",
            "NLL raw -> calibrated":
                f"{_fmt(r['log_loss_raw'])} -> {_fmt(r['log_loss_calibrated'])}",
            "AURC [95% CI]": _fmt(r["aurc"], r["aurc_ci95"]),
            "E-AURC": _fmt(r["eaurc"], r["eaurc_ci95"]),
            "acc @ 80% coverage": _fmt(r["accuracy_at_coverage_80"],
                                       r["accuracy_at_coverage_80_ci95"]),
            "acc @ 90% coverage": _fmt(r["accuracy_at_coverage_90"],
                                       r["accuracy_at_coverage_90_ci95"]),
            "AURC (entropy)": _fmt(r["aurc_entropy"], r["aurc_entropy_ci95"])})
    return shown


def display_robustness(cal: Calibration) -> list[dict]:
    return [{"config": r["config"], "artefact": r["artefact"],
             "severities": ", ".join(map(str, r["severities"])),
             "AURC [95% CI]": _fmt(r["aurc"], r["aurc_ci95"]),
             "E-AURC": _fmt(r["eaurc"], r["eaurc_ci95"]),
             "acc @ 90% coverage": _fmt(r["accuracy_at_coverage_90"],
                                        r["accuracy_at_coverage_90_ci95"])}
            for r in cal.robustness]


def as_json(cal: Calibration) -> dict:
    return {"subset": cal.subset, "table": cal.table, "risk_coverage": cal.curves,
            "robustness": cal.robustness, "runs_without_calibration": cal.left_out,
            "reliability": {name: {kind: t.to_dict(orient="records") for kind, t in r.items()}
                            for name, r in cal.reliability.items()}}


def sections(cal: Calibration, folder, save, csv) -> list:
    """The report sections; `save(fig, folder, name)` and `csv(rows, folder, name)` write files
    (report/files.py's helpers)."""
    from mribench.report.calibration_figures import reliability_grid, risk_coverage_figure
    from mribench.report.html import Section

    subset = f"{cal.subset} test"
    skipped = (f" {cal.left_out} run(s) logged before calibration existed have no calibrated "
               "probabilities and are left out here." if cal.left_out else "")
    long = pd.concat({n: pd.concat(r, names=["probabilities"]) for n, r in
                      cal.reliability.items()}, names=["config"]).reset_index(
        level=["config", "probabilities"])
    out = [Section(f"Calibration and selective prediction ({subset})", [
        "Each cell divides its logits by one temperature T fitted on its validation split "
        "(temperature scaling: T > 1 softens over-confident probabilities; the predicted class "
        "and the accuracy do not change). ECE, Brier score and NLL are the means over the runs "
        "before and after. The rest ranks the test images by their calibrated highest class "
        "probability: keeping the most confident share (the coverage) and referring the rest, "
        "risk is the error rate of the kept images. AURC is the area under that risk-coverage "
        "curve (lower is better); E-AURC subtracts the AURC a perfect ranking of the same "
        "errors would have, so it measures the ranking alone; acc @ 80% / 90% coverage is the "
        "accuracy on the 80% / 90% most confident images; AURC (entropy) ranks by the entropy "
        "instead. Intervals: 95% over test images and seeds resampled together." + skipped],
        table=display_table(cal), files=[csv(cal.table, folder, "calibration.csv")]),
        Section("Risk against coverage", [
            "One line per configuration: the error rate of the images kept when the most "
            "confident share is kept (calibrated highest class probability), with its 95% band "
            "over test images and seeds. A flat line is a ranking that knows nothing; a line "
            "that falls towards low coverage is one a clinician can use by thresholds."],
            figure=save(risk_coverage_figure(cal.curves, subset), folder, "risk_coverage.png"),
            files=[csv(cal.curves, folder, "risk_coverage.csv")]),
        Section("Reliability before and after calibration", [
            "Each configuration's test images (its runs pooled) binned by the confidence of the "
            "predicted class: accuracy against mean confidence per bin, raw and calibrated; "
            "points on the diagonal are calibrated."],
            figure=save(reliability_grid(cal.reliability, subset), folder,
                        "reliability_before_after.png"),
            files=[csv(long, folder, "reliability.csv")])]
    if cal.robustness:
        out.append(Section(f"Selective prediction under MRI artefacts ({subset})", [
            "Does the model know when an artefact has fooled it? Every corrupted test image of "
            "an artefact (all its severities) ranked by the calibrated highest class "
            "probability, with the temperature fitted on clean validation images: AURC, E-AURC "
            "and accuracy at 90% coverage, 95% intervals over images and seeds. Compare with "
            "the uncorrupted figures above."],
            table=display_robustness(cal),
            files=[csv(cal.robustness, folder, "calibration_robustness.csv")]))
    return out
