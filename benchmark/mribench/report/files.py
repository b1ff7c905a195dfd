"""Build a report folder: the CSV behind every table and plot, the PNG figures, the
explanation maps of every configuration, then the HTML page and the Markdown file."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from mribench import tracking
from mribench.report import composition as subset_mix
from mribench.report import figures as report_plots
from mribench.report import slices
from mribench.report.curves import (
    curve_points,
    display_points,
    images_note,
    separations,
)
from mribench.report.frontier import sections as frontier_sections
from mribench.report.html import Section, write
from mribench.report.tables import (
    Results,
    classes_of,
    confusion_tables,
    display_rows,
    external_display_rows,
    recall_table,
    run_rows,
)
from mribench.run import layout
from mribench.stats.metrics import safe_name

READING = [
    "Clean test: the test images with no exact or near copy (perceptual hash within the "
    "suite's near_bits of 256) in the training or validation images. It leads because copies "
    "of training images flatter every model; the full test set follows for comparison with "
    "published figures.",
    "Accuracy [95% CI]: a bootstrap over the test images and the seeds together. With two or "
    "more seeds it covers which test images happened to be drawn and the training noise "
    "between seeds (initial weights, batch order, validation draw). With one seed it covers "
    "the test images only, and says so: \"(test images only, 1 seed)\". It does not cover "
    "other datasets, scanners or hospitals, other hyper-parameters, or a different split.",
    "Run-only interval (black bars in the forest plot, *_seed_ci95 in the CSV): a Student-t "
    "interval over the runs' accuracies. On one fixed test set it covers training noise only "
    "and is too narrow as a statement about new patients; for k-fold, where each fold tests "
    "other images, it covers test images and training together (the folds' training sets "
    "overlap, so it is optimistic). With a handful of runs it is unstable; one run has none.",
    "Copies count once: test images that are copies of each other form a group (\"N images "
    "in G groups\"); the bootstrap and the paired tests resample groups, not images, since a "
    "copy is not new evidence. Resampling images made 95% intervals cover 55% of the time "
    "under clustered copies in simulation; groups, 94%.",
    "Per-run Wilson interval (runs table): one trained model, the test images drawn (it counts "
    "every image, copies too).",
    "p-value (pairwise tests): how often a difference at least this large would appear if the "
    "two configurations were equally accurate. One fixed test set with two or more seeds: a "
    "t-test with variance components over images and seeds, counting both which test images "
    "were drawn and each configuration's seed-to-seed training noise (column covers: \"test "
    "images and training seeds\"). With one seed it covers the test images only (\"test images "
    "only (1 seed)\"): it compares those two trained models, not the configurations, and a "
    "seed that shifts a whole run can make it reject equal configurations (36% of the time at "
    "1311 images in simulation). k-fold / repeated hold-out: the corrected resampled t-test, "
    "covering test images and training, with the folds averaged within each seed first when "
    "several seeds ran the same folds. Holm-adjusted over all pairs. A small p says the "
    "difference is unlikely to be luck of the draw; it does not say the difference is large "
    "or clinically relevant (read the difference and its interval for that).",
    "detectable: the smallest accuracy difference the comparison would detect with 80% power "
    "at its test size and seed count, from the same variance estimate. A large p with a "
    "detectable of 0.06 means differences under about 0.06 cannot be told apart here; it "
    "does not show that the two configurations are equivalent.",
]


def _save(fig, folder: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(folder / name, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return name


def _csv(frame: pd.DataFrame | list[dict], folder: Path, name: str, index: bool = False) -> str:
    frame = pd.DataFrame(frame) if isinstance(frame, list) else frame
    for col in frame.columns:  # images per class: one column per class, not a dict in one cell
        if frame[col].map(lambda v: isinstance(v, dict)).any():
            parts = pd.DataFrame(frame[col].map(lambda v: v if isinstance(v, dict) else {})
                                 .tolist(), index=frame.index)
            frame = frame.drop(columns=col).join(parts.add_prefix(f"{col}_"))
    for col in frame.columns:  # intervals as two columns, not a Python list in one cell
        if frame[col].map(lambda v: isinstance(v, list)).any():
            frame[[f"{col}_low", f"{col}_high"]] = pd.DataFrame(
                frame[col].map(lambda v: v if isinstance(v, list) else [None, None]).tolist(),
                index=frame.index)
            frame = frame.drop(columns=col)
    frame.to_csv(folder / name, index=index)
    return name


def _run_display(run: dict) -> dict:
    out = {"config": run["config"], "seed": run["seed"], "fold": run["fold"]}
    for subset, prefix in layout.PREFIXES.items():
        if run.get(f"{prefix}_accuracy") is None:
            continue
        low, high = run.get(f"{prefix}_accuracy_wilson_low"), run.get(f"{prefix}_accuracy_wilson_high")
        # runs logged before Wilson intervals existed (report --all) show the accuracy alone
        interval = "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"
        out[f"{subset} acc [Wilson 95%]"] = f"{run[f'{prefix}_accuracy']:.3f}{interval}"
        groups = run.get(f"{prefix}_groups")
        out[f"{subset} images"] = (f"{run.get(f'{prefix}_n')} in {groups} groups"
                                   if groups is not None else run.get(f"{prefix}_n"))
    out["run"] = run["run_id"][:8]
    return out


def _pair_display(pair: dict) -> dict:
    out = {}
    for key, value in pair.items():
        if key in ("dataset", "subset"):
            continue
        if key == "ci95":
            value = f"[{value[0]:+.3f}, {value[1]:+.3f}]"
        elif key in ("p_value", "p_holm"):
            value = f"{value:.2g}"
        elif key == "difference":
            value = f"{value:+.3f}"
        elif isinstance(value, float):
            value = f"{value:.3f}"
        out[key] = value
    return out


# arrays in explanations/maps.npz that are not a method's maps but label the grid
EXTRAS = ("images", "masks", "labels", "preds", "classes")


def _explanations(results: Results, folder: Path) -> list[Section]:
    """Each configuration's explanation maps (same seeded test images in every cell): the
    per-image maps (explanations/maps.npz) when a run has them, else its grid PNGs."""
    pngs: dict[str, dict[str, str]] = {}
    maps: dict[str, dict[str, np.ndarray]] = {}
    for _, name, runs in results.configs():
        for run_id in runs["run_id"]:
            files = tracking.artifact_paths(run_id, layout.EXPLANATIONS)
            if layout.EXPLANATION_MAPS in files:
                loaded = _load_maps(tracking.download(run_id, layout.EXPLANATION_MAPS))
                if loaded:
                    maps[name] = loaded
            images = sorted(f for f in files if f.endswith(".png"))
            for path in images:
                method = Path(path).stem
                target = f"explain_{safe_name(name)}_{safe_name(method)}.png"
                shutil.copy(tracking.download(run_id, path), folder / target)
                pngs.setdefault(name, {})[method] = target
            if images or name in maps:
                break  # one run per configuration: its lowest seed (and fold) that has them
    text = ["The same seeded test images in every configuration (explain.per_class per class, "
            "explain.seed), from each configuration's first seed that has explanations."]
    if maps:
        methods = sorted({m for v in maps.values() for m in v if m not in EXTRAS})
        return [Section(f"Explanations: {m}", text, figure=_save(report_plots.maps_grid(maps, m),
                                                                 folder, f"maps_{safe_name(m)}.png"))
                for m in methods]
    if pngs:
        return [Section("Explanations", text, gallery=pngs)]
    return []


def _load_maps(path: Path) -> dict[str, np.ndarray]:
    """Per-image maps: one [n, H, W] array per method, plus what the grid labels them with when
    present ('images', 'masks', 'labels', 'preds', 'classes'). Any other layout is ignored (the
    grid PNGs are used instead)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    out = {k: v for k, v in arrays.items() if k not in EXTRAS and v.ndim == 3
           and np.issubdtype(v.dtype, np.number)}
    if not out:
        return {}
    n = len(next(iter(out.values())))
    out |= {k: arrays[k] for k in EXTRAS if k in arrays
            and (k == "classes" or len(arrays[k]) == n)}
    return out


def _external_section(rows: list[dict]) -> list[Section]:
    table = external_display_rows(rows)
    return [Section("External test sets", [
        "Each trained model tested on another collection, mapped to its classes. Images that are "
        "exact or near copies of a training or validation image are left out of the clean part: "
        "the public sets share many images, so the whole-set accuracy is partly memory."],
        table=table, files=["configurations.csv"])] if table else []


def _composition_section(rows: list[dict], folder: Path) -> list[Section]:
    """Images per class, duplicate groups and baselines of every scored subset, and warnings."""
    table = subset_mix.composition_rows(rows)
    if not table:
        return []
    return [Section("What each test subset holds", [
        "Images per class and duplicate groups (copies of one image form one group; intervals "
        "and paired tests resample groups). Majority baseline: the accuracy of always "
        "predicting the subset's most frequent class; chance baseline: the expected accuracy "
        "of guessing with the subset's class frequencies. An accuracy means something only "
        "above both. A class with no image in a subset has recall and F1 n/a there, left out "
        "of the macro averages.", *(f"Warning: {w}" for w in subset_mix.warnings(rows))],
        table=table, files=[_csv(table, folder, "composition.csv")])]


def _curve_sections(results: Results, rows: list[dict], folder: Path) -> list[Section]:
    """One section per numeric axis of the suite: the curve, its table, where lines separate."""
    from mribench.report.curve_figure import curve_figure

    points = curve_points(results.runs, rows)
    apart = separations(points)
    out = []
    for axis in sorted({p["axis"] for p in points}):
        mine = [p for p in points if p["axis"] == axis]
        said = [s["statement"] for s in apart if s["axis"] == axis]
        images = images_note(axis)
        out.append(Section(f"Curve: accuracy against {axis}", [
            "One line per configuration; the band is its 95% interval over test images and "
            "seeds, the same as in the configuration table." + (f" {images}" if images else "")
            + " Two lines separate where their bands do not overlap (stricter than a 5% test "
            "of their difference):", *said],
            table=display_points(mine),
            figure=_save(curve_figure(mine, axis), folder, f"curve_{safe_name(axis)}.png"),
            files=[_csv(mine, folder, f"curve_{safe_name(axis)}.csv")]))
    return out


def build(folder: Path, results: Results, rows: list[dict], pairs: list[dict], meta: list[str],
          title: str, notes: list[Section] | None = None,
          robustness=None, calibration=None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for old in list(folder.glob("*.png")) + list(folder.glob("*.csv")):
        old.unlink()  # a rerun must not leave figures of configurations that are gone
    classes = classes_of(results.runs)
    subset = layout.leading_subset(rows)
    shown = slices.with_baseline(display_rows(rows), rows)
    names = [r["config"] for r in rows]
    sections = [
        Section("Configurations", ["Mean over seeds and folds; clean test first (n = runs). "
                                   "Scores (F1, kappa, MCC, ECE) are on the clean test. Beside "
                                   "each accuracy: its images in duplicate groups, the majority "
                                   "/ chance baselines, balanced accuracy and recall per class "
                                   "(n/a: the subset has no image of that class)."],
                table=shown, files=[_csv(rows, folder, "configurations.csv")]),
        *_composition_section(rows, folder),
        *_curve_sections(results, rows, folder),
        *_external_section(rows),
        *(notes or []),
        Section("How to read the intervals and p-values", READING, note=True),
        Section("Accuracy with 95% intervals", figure=_save(
            report_plots.forest_figure(rows), folder, "forest.png"),
            files=["configurations.csv"]),
    ]
    several = len({r["dataset"] for r in rows}) > 1
    tested = [{**p, "a": f"{p['dataset']}: {p['a']}" if several else p["a"],
               "b": f"{p['dataset']}: {p['b']}" if several else p["b"]}
              for p in pairs if p["subset"] == subset]
    if tested:
        table = [_pair_display(p) for p in tested]
        sections.append(Section(f"Pairwise tests ({subset} test)", [
            "difference = accuracy of a minus accuracy of b, with its 95% interval; p_holm is "
            "adjusted for the number of pairs."], table=table,
            figure=_save(report_plots.pairwise_figure(tested, names, subset), folder, "pairwise.png"),
            files=[_csv(pairs, folder, "pairwise.csv")]))
    sections.append(Section("Accuracy against cost", [
        "Seconds per training epoch on this machine; a frozen backbone trains its head on "
        "features computed once, so its epochs cost almost nothing."],
        figure=_save(report_plots.cost_figure(rows), folder, "cost.png"),
        files=["configurations.csv"]))
    sections += frontier_sections(results, rows, folder, _save, _csv)
    if any("leakage_gap" in r for r in rows):
        sections.append(Section("Leakage gap", [
            "How much the test images that have a copy in train/val raise the accuracy."],
            figure=_save(report_plots.leakage_figure(rows), folder, "leakage.png"),
            files=["configurations.csv"]))
    if classes:
        recall = recall_table(results, subset)
        if not recall.isna().all().all():
            sections.append(Section(f"Per-class recall ({subset} test)", figure=_save(
                report_plots.recall_figure(recall), folder, "recall.png"),
                files=[_csv(recall, folder, "recall.csv", index=True)]))
        confusion = confusion_tables(results, subset)
        if confusion:
            long = pd.concat({n: c.stack() for n, c in confusion.items()}).rename("count")
            sections.append(Section(f"Confusion matrices ({subset} test, pooled over runs)",
                                    ["Share of each true class (rows) and image count."],
                                    figure=_save(report_plots.confusion_grid(confusion),
                                                 folder, "confusion.png"),
                                    files=[_csv(long.reset_index().rename(
                                        columns={"level_0": "config"}), folder, "confusion.csv")]))
    if calibration is not None:  # report/calibration.py: calibration, selective prediction
        from mribench.report.calibration import sections as calibration_sections

        sections += calibration_sections(calibration, folder, _save, _csv)
    by_source = slices.slice_rows(results, subset)
    if by_source:
        sections.append(Section(f"Accuracy per source and original size ({subset} test)",
                                slices.SLICE_NOTE, table=slices.display_slices(by_source),
                                files=[_csv(by_source, folder, "slices.csv")]))
    if robustness is not None:  # report/robustness.py: MRI artefacts
        from mribench.report.robustness import sections as robustness_sections

        sections += robustness_sections(robustness, folder, _save, _csv)
    sections += _explanations(results, folder)
    runs = run_rows(results)
    sections.append(Section("Runs", ["Each run's accuracy with its 95% Wilson interval (which "
                                     "test images were drawn, for that one trained model)."],
                            table=[_run_display(r) for r in runs],
                            files=[_csv(runs, folder, "runs.csv")]))
    meta = meta + [f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"]
    return write(folder, title, meta, sections)
