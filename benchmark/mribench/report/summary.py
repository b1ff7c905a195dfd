"""`mribench report NAME`: a suite's finished cells from MLflow, compared.

Cells are grouped by configuration (run_key without seed and fold), so runs of an older version
of the suite never blend into the current one's numbers. The console shows the configuration
table (mean [95% interval]); the folder (--out, default ./reports/NAME) gets the HTML page,
the Markdown file, the figures and the CSV behind each, and is logged to the suite's latest
parent run under report/.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from mribench import tracking
from mribench.config.published import deviation_rows, flag_rows, value_flags
from mribench.config.suite_file import load_suite
from mribench.console import console, emit_table
from mribench.data import fallback
from mribench.matrix import expand
from mribench.report import calibration as calibration_report
from mribench.report import composition as subset_mix
from mribench.report import robustness as robust_report
from mribench.report import slices
from mribench.report.curves import curve_points, display_points, separations
from mribench.report.tables import Results, configuration_rows, display_rows, external_display_rows
from mribench.run import layout
from mribench.stats.compare import paired_rows

PAIR_COLUMNS = ["subset", "a", "b", "test", "covers", "repeats", "images", "groups", "accuracy_a",
                "accuracy_b", "difference", "ci95", "p_value", "p_holm", "detectable"]


def published_by_config(suite) -> dict[tuple[str, str], dict]:
    """(model, strategy) display names -> the suite's published numbers for that cell.
    Flagged values (impossible or inconsistent) are left out: the report lists them apart."""
    out: dict[tuple[str, str], dict] = {}
    for p in suite.published:
        flagged = {f["metric"] for f in value_flags(p)}
        values = {k: v for k, v in p.values.items() if k not in flagged}
        for m in suite.models:
            for s in suite.strategies:
                if p.model in (m.display, m.name) and p.strategy in (s.display, s.name):
                    out.setdefault((m.display, s.display), {}).update(values)
    return out


def current_runs(runs: pd.DataFrame, suite, include_all: bool) -> pd.DataFrame:
    """Newest finished run per cell of the suite as it is now (all versions with include_all),
    with the configuration each belongs to."""
    # a fallback (the smoke suite's embedded sample) makes its cells current too
    cells = {c.run_key: c for version in fallback.alternatives(suite) for c in expand(version)}
    current = {key: c.config_key for key, c in cells.items()}
    if runs.empty:
        return runs
    if not include_all:
        runs = runs[runs["run_key"].isin(current)]
    # a --force rerun repeats a cell: its newest finished run counts, once
    runs = (runs[runs["status"] == "FINISHED"].sort_values("start_time", ascending=False)
            .drop_duplicates("run_key"))
    # the suite knows which runs repeat one configuration; runs of older versions (--all) use
    # their config_key tag, or stand alone when they predate it
    tagged = runs.get("config_key", runs["run_key"]).fillna(runs["run_key"])
    return _labelled(runs.assign(config_key=runs["run_key"].map(current).fillna(tagged)), cells)


def _labelled(runs: pd.DataFrame, cells: dict) -> pd.DataFrame:
    """A run of one of the suite's cells is labelled as this suite labels the cell: a cell
    another suite trained first (same run_key, found finished) carries that suite's tags, e.g.
    no `axes` value for an axis only this suite has."""
    labels = pd.DataFrame([{"run_key": key, "model": c.model.display, "strategy":
                            c.strategy.display, "axes": c.axes_label or None,
                            **{f"axis.{name}": str(value) for name, value in c.axes}}
                           for key, c in cells.items()]).set_index("run_key")
    out = runs.copy()
    for column in labels.columns:
        ours = out["run_key"].map(labels[column])
        out[column] = ours.where(out["run_key"].isin(labels.index),
                                 out[column] if column in out else None)
    return out


def report(suite_name: str, experiment: str | None, as_json: bool, include_all: bool = False,
           compare: bool = False, out: str | None = None, write_files: bool = True,
           register: str | None = None) -> int:
    from mribench import outputs

    suite = load_suite(suite_name)
    # where it writes and what it registers, checked before the runs are read
    folder = None if not write_files else outputs.folder_target(
        out or outputs.report_folder(suite.name), "--out" if out else "report folder",
        ours="index.html")
    if register:
        outputs.registered_model_name(register)
    name = experiment or suite.experiment_name
    exp_id = tracking.experiment_id_of(name)
    if exp_id is None:
        console.print(f"[red]no experiment named {name!r} at {tracking.tracking_uri()}; "
                      f"run the suite first")
        return 2
    every = tracking.search_cells(exp_id)
    runs = current_runs(every, suite, include_all)
    if runs.empty:
        others = 0 if every.empty else int((every["status"] == "FINISHED").sum())
        console.print(f"[red]experiment {name!r} has no finished cell runs of suite "
                      f"{suite.name!r} as it is now[/]" + (
                          f": its {others} finished run(s) belong to other versions of the "
                          "suite (another config, --set overrides, a shrunk run); --all "
                          "includes them" if others else ""))
        return 2
    console.print(f"reading {len(runs)} runs of {name!r} ...")
    results = Results(name, runs, {r: tracking.load_predictions(r) for r in runs["run_id"]})
    rows = configuration_rows(results, published_by_config(suite))
    slices.add_baseline(rows, results)  # the metadata-only baseline beside the models
    if not include_all:
        _note_missing(rows, suite)
    pairs = paired_rows(runs, results.load)
    # MRI artefacts (suites with a robustness block); adds the mCA to rows
    robust = robust_report.analyse(results, rows, robust_report.reference_of(suite))
    # temperature scaling and selective prediction (runs that carry calibrated probabilities)
    calibrated = calibration_report.analyse(results, rows)
    datasets = sorted({r["dataset"] for r in rows})
    points = curve_points(runs, rows)  # suites with axes: accuracy against each numeric axis
    apart = separations(points)
    mixes = subset_mix.composition_rows(rows)
    mix_warnings = subset_mix.warnings(rows)
    by_source = slices.slice_rows(results, layout.leading_subset(rows))
    extra = {"experiment": name, "runs": int(len(runs)), "comparisons": pairs,
             "composition": mixes, "composition_warnings": mix_warnings,
             **({"slices": by_source} if by_source else {}),
             **({"curves": points, "separations": apart} if points else {}),
             "deviations": deviation_rows(suite.deviations),
             "published_flags": flag_rows(suite.published),
             **({"robustness": {"table": robust.table, "pairs": robust.pairs}} if robust else {}),
             **({"calibration": calibration_report.as_json(calibrated)} if calibrated else {})}
    if write_files:
        page, md = _write(folder, suite, results, rows, pairs, datasets, exp_id, robust,
                          calibrated)
        extra |= {"html": str(page), "markdown": str(md)}
    if register:  # the best configuration's median-seed model, alias champion (inference/)
        from mribench.inference.champion import register_best

        extra["registered"] = register_best(register, suite.name, rows, runs)
    title = f"{name} ({', '.join(datasets)}): mean [95% CI over test images and seeds]"
    if as_json:
        emit_table(rows, title, True, extra=extra)
        return 0
    emit_table(slices.with_baseline(display_rows(rows), rows), title, False)
    if mixes:
        emit_table(mixes, "what each test subset holds: images, duplicate groups, images per "
                   "class and the baselines an accuracy must beat", False)
    for line in mix_warnings:
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False)
    if by_source:
        emit_table(slices.display_slices(by_source), "accuracy per image source and original size "
                   "(mean [95% CI over test images and seeds])", False)
    if robust:
        emit_table(robust_report.display_table(robust), f"MRI artefacts ({robust.subset} test): "
                   "mean accuracy over severities, mCA [95% CI], mCE vs the reference", False)
    if calibrated:
        emit_table(calibration_report.display_table(calibrated),
                   f"calibration and selective prediction ({calibrated.subset} test): ECE before "
                   "and after temperature scaling, AURC and accuracy at fixed coverage "
                   "[95% CI over test images and seeds]", False)
    for axis in sorted({p["axis"] for p in points}):
        emit_table(display_points([p for p in points if p["axis"] == axis]),
                   f"accuracy against {axis} (mean [95% CI over test images and seeds])", False)
        said = [{"where the 95% intervals separate": s["statement"]} for s in apart
                if s["axis"] == axis]
        if said:
            emit_table(said, f"{axis}: where the curves separate", False)
    if external := external_display_rows(rows):
        emit_table(external, "external test sets (clean: without copies of train/val images)", False)
    print_paper_notes(suite)
    if compare:
        # pairs are within one dataset; name it when the suite has several
        from mribench.report.compare_table import print_pairs

        print_pairs(pairs, len(datasets) > 1)  # one line per pair, a legend for the tests
    return 0


def _note_missing(rows: list[dict], suite) -> None:
    """A configuration with fewer finished cells than the suite declares says so (its mean and
    interval rest on fewer runs than planned): failed, still running or not run yet."""
    expected = Counter(c.config_key for version in fallback.alternatives(suite)
                       for c in expand(version))
    for row in rows:
        planned = expected.get(row["config_key"], 0)
        if row["n"] < planned:
            row["missing"] = (f"{planned - row['n']} of {planned} cells not finished (failed "
                              "or not run): n counts the finished ones")


def print_paper_notes(suite) -> None:
    """Beside the published figures: the suite's deviations from the paper and the published
    values that cannot be compared (impossible or inconsistent), each with its reason."""
    if suite.deviations:
        emit_table(deviation_rows(suite.deviations),
                   f"{suite.name}: deviations from the paper", False,
                   columns=["topic", "paper", "ours", "why"])
    flags = flag_rows(suite.published)
    if flags:
        emit_table(flags, f"{suite.name}: published values flagged (not compared)", False,
                   columns=["model", "strategy", "metric", "value", "flag", "why"])


def _split_line(dataset, split, name_it: bool) -> str:
    """How a dataset was split and what its clean test leaves out (datasets may differ)."""
    protocol = split.protocol + (f" ({split.folds} folds)" if split.protocol == "kfold" else "")
    return ((f"{dataset.name}: " if name_it else "") + f"split {protocol}, duplicate groups "
            f"kept together: {split.groups}; clean test = no {dataset.dedup} copy in train/val"
            + (f" (near: at most {dataset.near_bits} of 256 hash bits differ)"
               if dataset.dedup == "near" else "")
            + (f" (robust: near, or cropped/rescaled/rotated copies with at least "
               f"{dataset.copy_match.min_inliers} keypoint inliers and aligned correlation at least "
               f"{dataset.copy_match.min_correlation})" if dataset.dedup == "robust" else ""))


def _write(folder: Path, suite, results: Results, rows, pairs, datasets, exp_id, robust=None,
           calibrated=None):
    from mribench.report.files import build

    meta = [f"suite {suite.name}: {suite.description}".rstrip(": "),
            f"experiment {results.experiment} at {tracking.tracking_uri()}; "
            f"{len(results.runs)} finished runs; datasets {', '.join(datasets)}",
            *(_split_line(d, d.split or suite.split, len(suite.datasets) > 1)
              for d in suite.datasets)]
    page, md = build(folder, results, rows, pairs, meta, f"{suite.name}: report",
                     notes=paper_sections(suite), robustness=robust, calibration=calibrated)
    parent = tracking.latest_suite_run(exp_id, suite.name)
    if parent:
        tracking.log_folder(parent, folder, layout.REPORT)
    console.print(f"report written to {page} and {md}"
                  + (f"; logged to run {parent} under report/" if parent else ""))
    return page, md


def paper_sections(suite) -> list:
    """The deviations from the paper and the flagged published values, as report sections."""
    from mribench.report.html import Section

    out = []
    if suite.deviations:
        out.append(Section("Deviations from the paper", [
            "Where this suite differs from what the paper did, in the paper's words and ours, "
            "and why."], table=deviation_rows(suite.deviations)))
    flags = flag_rows(suite.published)
    if flags:
        out.append(Section("Published values flagged (not compared)", [
            "Published figures that are impossible or inconsistent with each other: shown, "
            "never compared with ours."], table=flags))
    return out
