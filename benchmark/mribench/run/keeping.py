"""What a cell keeps beyond its metrics: its training checkpoint while it runs (so a killed cell
resumes mid-training) and, once tested, its trained model as an MLflow logged model."""
from __future__ import annotations

import copy
import io
import tempfile
from pathlib import Path

from mribench import tracking
from mribench.console import console
from mribench.data.locate import cache_root
from mribench.train.checkpoints import Checkpoints, plain


def checkpoint_root(cell, cache_dir: str | None) -> Path:
    folder = cell.artifacts.checkpoint_dir
    return Path(folder).expanduser().resolve() if folder else cache_root(cache_dir) / "checkpoints"


def open_checkpoints(cell, cache_dir: str | None, epochs: int, first_step: int = 0,
                     net=None) -> Checkpoints | None:
    """The cell's checkpoints (None when training.checkpoint_every is 0). One left by a killed
    run of the same run_key is resumed from: said on the console and in the `resumed_from` tag,
    and the epochs it had trained are logged again into this run (their curves stay whole).
    One that is damaged or does not fit `net` is moved aside, said, and tagged
    `checkpoint_set_aside`; the cell trains from epoch 0."""
    if cell.training.checkpoint_every == 0:
        return None
    ckpt = Checkpoints.open(checkpoint_root(cell, cache_dir), cell.run_key,
                            cell.training.checkpoint_every, net)
    if ckpt.discarded:
        tracking.set_tags({"checkpoint_set_aside": ckpt.discarded})
    if ckpt.saved is None:
        return ckpt
    where = ckpt.describe(epochs)
    console.print(f"resuming {cell.title} from its checkpoint: {where} ({ckpt.file})",
                  markup=False, highlight=False)
    tracking.set_tags({"resumed_from": where})
    peeked = ckpt.extra.get("peeked", [])
    for i, row in enumerate(ckpt.saved["history"]):
        extra = {"test_acc_epoch_peeking": peeked[i]} if i < len(peeked) else {}
        tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"} | extra,
                             step=row["epoch"] + first_step)
    return ckpt


def close_checkpoints(cell, cache_dir: str | None) -> None:
    """A finished cell's checkpoint goes, unless artifacts.keep_checkpoints."""
    if not cell.artifacts.keep_checkpoints:
        Checkpoints(checkpoint_root(cell, cache_dir) / cell.run_key, cell.run_key, 0).remove()


def keep_model(cell, built, prepared, net, mean, std, result,
               temperature: float = 1.0) -> dict[str, float]:
    """Log the whole network (backbone + trained head) as the run's model, with what it needs to
    classify raw images; `artifacts.model` says which weights (best: the ones just tested).
    The cell's temperature travels with the best weights it was fitted for; the last epoch's
    weights were not calibrated, so their package carries none (its probabilities are raw)."""
    kept = cell.artifacts.model
    if kept == "none":  # a knn cell's model is its backbone and its fitted neighbour index
        return {}
    from PIL import Image

    from mribench.data import images
    from mribench.models import packaged
    from mribench.tracking import logged_model

    best = None
    if kept == "last" and getattr(result, "last_state", None) is not None:
        best = copy.deepcopy(plain(net).state_dict())
        plain(net).load_state_dict(result.last_state)
    try:
        meta = packaged.manifest(cell, built, prepared.classes, mean, std, kept)
        meta["calibration"] = packaged.calibration_entry(temperature if kept == "best" else None)
        seen = [{"split": split, "file": prepared.relative(s.path),
                 "sha256": prepared.sha256.get(s.path, ""),
                 "phash": images.inspect(s.path, prepared.sha256[s.path])
                 if s.path in prepared.sha256 else ""}
                for split in ("train", "val") for s in prepared.splits[split]]
        example = io.BytesIO()  # one test image, at the cell's size, as a served model gets it
        pixels = images.load_image(prepared.splits["test"][0].path, cell.preprocess)
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(example, "PNG")
        with tempfile.TemporaryDirectory() as tmp:
            size = packaged.save(Path(tmp) / "package", built.model, meta, seen)
            info = logged_model.log_model(Path(tmp) / "package", example.getvalue(),
                                          prepared.classes, {"run_key": cell.run_key,
                                                             "weights_kept": kept,
                                                             **meta["calibration"]})
    finally:
        if best is not None:  # whatever runs after this sees the tested weights again
            plain(net).load_state_dict(best)
    tracking.set_tags({"model_uri": info["model_uri"], "model_weights": kept})
    size_mb = size / 2**20
    tracking.log_metrics({"model_size_mb": size_mb})
    return {"model_size_mb": size_mb}
