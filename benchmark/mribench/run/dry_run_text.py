"""The dry run's needs and cost as console tables (stdout), narrow enough for 100 columns;
--json carries the same numbers unformatted (run/suite.py)."""
from __future__ import annotations

from mribench.console import emit_table
from mribench.run.estimate import duration


def needs(found: dict) -> None:
    rows = [{"needs": r["kind"], "name": r["name"], "what": r["what"], "status": r["status"],
             **({"from": r["from"]} if r["kind"] == "weights" else {})} for r in found["rows"]]
    missing = found["weights_missing"]
    extra = {}
    if missing:
        extra["weights"] = (f"{len(missing)} not on this machine: downloaded on first use "
                            f"(~{found['download_megabytes']:.0f} MB from the hubs; URLs in "
                            "--json), or fetch them now")
        if found["fetch_weights"]:
            extra["fetch"] = found["fetch_weights"]
    data_missing = [d for d in found["data"] if not d["found"]]
    for d in data_missing:
        extra[f"data {d['name']}"] = d["fetch"] or d["problem"]
    emit_table(rows, "what the suite needs on this machine", False,
               columns=["needs", "name", "what", "status", "from"], extra=extra)


def costs(est: dict) -> None:
    several = len({r["dataset"] for r in est["rows"]}) > 1
    rows = [{**({"dataset": r["dataset"]} if several else {}), "model": r["model"],
             "strategy": r["strategy"], "cells": r["cells"], "px": r["px"],
             "batch": r.get("batch"), "path": r["path"],
             "images x epochs": f"{r['images_x_epochs']:,}",
             "time": duration(r["seconds"]) if r["px"] else "unknown",
             "range": (f"{duration(r['low_seconds'])} - {duration(r['high_seconds'])}"
                       if r["px"] else "-")} for r in est["rows"]]
    total = (f"{duration(est['seconds'])} [{duration(est['low_seconds'])} - "
             f"{duration(est['high_seconds'])}] for {est['cells']} cells, "
             f"{est['images_x_epochs']:,} images x epochs")
    cold = [d for d in est.get("decoding", []) if d["cache"] == "cold"]
    warm = [d for d in est.get("decoding", []) if d["cache"] == "warm"]
    if cold:
        total += f", incl. {duration(est['decode_seconds'])} decoding images on first use"
    extra = {"suite": total, "on": est["device"], "how": est["how"]}
    if cold or warm:
        extra["decoding"] = "; ".join(
            [f"{d['dataset']} {d['px']} px: {d['unique']:,} images, cold, "
             f"{duration(d['seconds'])} ({1000 * d['seconds_per_image']:.0f} ms/image)"
             for d in cold]
            + [f"{d['dataset']} {d['px']} px: warm (cached)" for d in warm])
    audits = est.get("robust_audits", [])
    if audits:
        cold_audits = [a for a in audits if a["cache"] == "cold"]
        extra["copy audit"] = (
            "robust-copy audit before the cells, not in the total: "
            + "; ".join(f"{a['dataset']} ({a['unique']:,} images) {a['cache']}" for a in audits)
            + (" (cold: minutes per thousand images on a 2-core CPU, docs/speed.md)"
               if cold_audits else ""))
    if est.get("calibration_load") is not None:
        busy = est["calibration_load"] > 0.8 * (est["cores"] or 1)
        extra["load"] = (f"calibrated at load average {est['calibration_load']} on "
                         f"{est['cores']} cores (now {est['load_now']})"
                         + ("; a busy machine: times hold while it stays this busy "
                            "(--recalibrate measures again)" if busy else ""))
    if est["unknown_cells"]:
        extra["unknown"] = (f"{est['unknown_cells']} cell(s) not costed: their dataset is not "
                            "on this machine and not a registered set")
    emit_table(rows, "estimated cost on this machine (cells already finished are skipped at "
               "run time)", False, extra=extra)
