"""`mribench predict`: a logged model's class probabilities for new images, and explanations.

Probabilities are calibrated by default: divided by the temperature fitted on the cell's
validation split (run/calibrated.py), which the logged model carries; `--raw-probabilities`
gives the network's raw softmax. `--abstain-below P` adds a `refer` column: True where the
highest class probability is below P (decide when confident, refer the rest), and the summary
says how many images were referred."""
from __future__ import annotations

import os
from pathlib import Path

from mribench.console import console, emit_table
from mribench.data.samples import DataError
from mribench.errors import UserError
from mribench.inference.inputs import collect
from mribench.inference.locate import fetch


def predict(uri: str, paths: list[str], device: str = "cpu", csv_out: str | None = None,
            as_json: bool = False, explain: str | None = None, out: str | None = None,
            raw: bool = False, abstain_below: float | None = None) -> int:
    from mribench import outputs
    from mribench.stats.metrics import safe_name

    if explain and not out:
        raise DataError("--explain writes overlay images: give the folder with --out DIR")
    if abstain_below is not None and not 0 < abstain_below <= 1:
        raise UserError(f"--abstain-below: a probability in (0, 1], got {abstain_below:g}")
    # where results go, then what is read: both fail before the model is downloaded
    csv_target = outputs.file_target(csv_out, "--csv") if csv_out else None
    if out:
        outputs.folder_target(out, "--out")
    items = collect(paths)
    predictor, run_id = fetch(uri, device)
    pixels = [read(predictor, path) for path, _ in items]
    probs = predictor.probabilities(pixels, raw=raw)
    classes = predictor.classes
    kind = "raw" if raw or not predictor.calibrated else "calibrated"
    if not raw and not predictor.calibrated:
        console.print("this model carries no temperature (logged before calibration, or its "
                      "last-epoch weights): its probabilities are raw", style="yellow")
    labelled = any(label is not None for _, label in items)
    rows = []
    for (path, label), p in zip(items, probs):
        row = {"path": str(path), **({"label": label or ""} if labelled else {}),
               "predicted": classes[int(p.argmax())]}
        row |= {f"prob_{safe_name(c)}": float(v) for c, v in zip(classes, p)}
        if abstain_below is not None:
            row["refer"] = bool(p.max() < abstain_below)
        rows.append(row)
    summary = {"probabilities": kind, "temperature": predictor.temperature}
    if abstain_below is not None:
        referred = sum(r["refer"] for r in rows)
        summary |= {"abstain_below": abstain_below, "referred": referred, "decided":
                    len(rows) - referred}
        console.print(f"{referred} of {len(rows)} image(s) referred: their highest {kind} "
                      f"class probability is below {abstain_below:g}")
    if explain:
        written = explain_images(predictor, items, pixels, probs, explain, Path(out), device)
        console.print(f"{explain} overlays of {len(written)} image(s) written to {out}")
    if csv_target:
        import pandas as pd

        from mribench.files import atomic_write

        # whole or not at all: a disk that fills up leaves any earlier file as it was
        try:
            atomic_write(csv_target, lambda fh: fh.write(
                pd.DataFrame(rows).to_csv(index=False).encode("utf-8")))
        except OSError as err:  # a write error names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(csv_target)) from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(csv_target, 0o666 & ~umask)  # as an ordinary write makes it, not mkstemp's 0600
        console.print(f"{len(rows)} prediction(s) written to {csv_out}")
        if not as_json:
            return 0
    emit_table(rows, f"{predictor.meta['cell']} ({uri}): {len(rows)} image(s)", as_json,
               extra={"model": uri, "run_id": run_id, "classes": classes, **summary})
    return 0


def read(predictor, path: Path):
    """The image's pixels as the model's cell made them; one line naming an unreadable file."""
    try:
        return predictor.pixels(path)
    except Exception as err:  # PIL raises several types for files that are not images
        raise DataError(f"{path}: cannot be read as an image ({type(err).__name__}: "
                        f"{str(err)[:200]})") from None


def explain_images(predictor, items, pixels, probs, method: str, out: Path,
                   device: str) -> list[Path]:
    """One figure per image (the image and its overlay, titled with label and prediction) made
    by the cells' own explanation code; the label is the prediction when the input has none."""
    import matplotlib

    matplotlib.use("Agg")
    from mribench.config.schema import ExplainConfig
    from mribench.explain import explainer

    cfg = ExplainConfig(methods=[method], randomisation="none", faithfulness=False)
    layer_spec = predictor.meta["model"].get("explain", {}).get("gradcam_layer", "default")
    layers = {} if method == "lime" else predictor.built.explain_layer(layer_spec)[1]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, ((path, label), px, p) in enumerate(zip(items, pixels, probs)):
        known = label in predictor.classes
        y = predictor.classes.index(label) if known else int(p.argmax())
        result = explainer.explain(predictor.network, layers, [px], predictor.inputs([px]).cpu(),
                                   [y], predictor.classes, cfg, device)
        target = out / f"{i:04d}_{path.stem}_{method}.png"
        result.figures[method].savefig(target, dpi=120)
        written.append(target)
    return written
