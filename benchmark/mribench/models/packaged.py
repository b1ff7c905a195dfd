"""A trained cell's network as files that outlive its run, and classifying raw images with them.

A package folder holds `weights.pt` (the whole network's float32 state dict: backbone and trained
head, also on the frozen feature-reuse path, where only the head trained on stored features),
`manifest.json` (classes, preprocessing and normalisation, the model and strategy config the
network is rebuilt from, run_key, weights provenance) and `seen_images.csv` (content and
perceptual hashes of the training and validation images, for the duplicate audit of a later
evaluation on another set). `Predictor` rebuilds the network and classifies images with exactly
the cell's decode -> resize -> normalise path (data/decode.py, data/transforms.py), so on the
cell's own test images it gives the cell's own probabilities. No MLflow here: tracking wraps it.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

import mribench
from mribench.errors import UserError

MANIFEST, WEIGHTS, SEEN = "manifest.json", "weights.pt", "seen_images.csv"
FORMAT = 1


def manifest(cell, built, classes: list[str], mean, std, kept: str) -> dict:
    """Everything needed to use the network on raw images, and where it came from."""
    return {
        "format": FORMAT, "package_version": mribench.__version__, "classes": list(classes),
        "preprocess": cell.preprocess.model_dump(mode="json"),
        "normalize": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "model": cell.model.model_dump(mode="json"),
        "strategy": cell.strategy.model_dump(mode="json"),
        "architecture": {"source": built.spec.source, "arch": built.spec.arch,
                         "head": cell.model.head.type},
        "run_key": cell.run_key, "config_key": cell.config_key, "cell": cell.title,
        "dataset": cell.dataset.name, "weights": {
            "kept": kept,  # best: the best-validation epoch's; last: the last epoch's
            "pretrained_source": built.info.get("weight_source"),
            "pretrained_file": built.info.get("weight_file"),
            "pretrained_sha256": built.info.get("weight_sha256")},
    }


def calibration_entry(temperature: float | None) -> dict:
    """The manifest's `calibration`: the temperature `Predictor` divides the logits by (fitted
    on the cell's validation split), or none (raw probabilities: the last epoch's weights)."""
    if temperature is None:
        return {"temperature": None, "calibration": "none: the temperature was fitted for the "
                "best-validation weights, not these (artifacts.model: last)"}
    return {"temperature": float(temperature),
            "calibration": "temperature scaling fitted on the cell's validation split"}


def save(folder: Path, network: torch.nn.Module, meta: dict, seen: list[dict]) -> int:
    """Write a package; returns the weight file's size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save(state, folder / WEIGHTS)
    (folder / MANIFEST).write_text(json.dumps(meta, indent=1))
    with open(folder / SEEN, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["split", "file", "sha256", "phash"])
        writer.writeheader()
        writer.writerows(seen)
    return (folder / WEIGHTS).stat().st_size


def state_dict_bytes(network: torch.nn.Module) -> int:
    """What a logged model's weight file costs: its state dict in float32 (buffers included)."""
    return sum(t.numel() * 4 if t.is_floating_point() else t.numel() * t.element_size()
               for t in network.state_dict().values())


def read_seen(folder: Path) -> list[dict]:
    with open(Path(folder) / SEEN, newline="") as fh:
        return list(csv.DictReader(fh))


class Predictor:
    """The packaged network, rebuilt on `device`, classifying paths, image bytes or arrays."""

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 32):
        from mribench.config.schema import ModelConfig, PreprocessConfig, StrategyConfig
        from mribench.data.loader import _stats
        from mribench.data.transforms import ToInput
        from mribench.models import strategies
        from mribench.models.build import build

        self.folder = Path(folder)
        self.meta = json.loads((self.folder / MANIFEST).read_text())
        self.classes = list(self.meta["classes"])
        self.pre = PreprocessConfig(**self.meta["preprocess"])
        strategy = strategies.as_deployed(StrategyConfig(**self.meta["strategy"]))
        built = build(ModelConfig(**self.meta["model"]), strategy,
                      num_classes=len(self.classes), in_chans=self.pre.channels,
                      image_size=self.pre.image_size, load_weights=False)
        self.built = built
        self.network = built.model
        self.network.load_state_dict(torch.load(self.folder / WEIGHTS, map_location="cpu",
                                                weights_only=True))
        self.network.to(device).eval()
        self.device, self.batch_size = device, batch_size
        norm = self.meta["normalize"]
        self.mean = _stats(norm["mean"], self.pre.channels)
        self.std = _stats(norm["std"], self.pre.channels)
        self.to_input = ToInput(None, self.mean, self.std)
        # packages from before calibration, or of last-epoch weights, have no temperature
        self.temperature = (self.meta.get("calibration") or {}).get("temperature")

    def pixels(self, image) -> np.ndarray:
        """uint8 [H, W, C] at the cell's size and channels from a path, file bytes or an array
        (uint8 or uint16, [H, W] or [H, W, C]), as the cell's loader would have made it."""
        from PIL import Image

        from mribench.data.decode import decode, decode_bytes, to_mode, to_pixels

        if isinstance(image, (bytes, bytearray, memoryview)):
            return to_pixels(decode_bytes(bytes(image)), self.pre)
        if isinstance(image, np.ndarray):
            arr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
            if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3) or \
                    (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
                raise UserError(f"an image array must be uint8 (or uint16) [H, W] or [H, W, C] "
                                 f"with C in 1, 3, 4; got {arr.dtype} {list(image.shape)}")
            return to_pixels(to_mode(Image.fromarray(arr)), self.pre)
        return to_pixels(decode(Path(image)), self.pre)

    def inputs(self, pixels: list[np.ndarray]) -> torch.Tensor:
        """The network's normalised input for decoded pixels (what explanations take too)."""
        batch = torch.from_numpy(np.stack(pixels)).to(self.device)
        return self.to_input(batch, torch.zeros(len(pixels), 4))

    @property
    def calibrated(self) -> bool:
        return self.temperature is not None

    @torch.inference_mode()
    def probabilities(self, pixels: list[np.ndarray], raw: bool = False) -> np.ndarray:
        """Class probabilities [N, classes], float64 softmax of the logits as `evaluate` does,
        divided by the package's temperature first unless `raw` (or it has none)."""
        from mribench.stats.calibration import scale

        out = []
        for start in range(0, len(pixels), self.batch_size):
            logits = self.network(self.inputs(pixels[start:start + self.batch_size]))
            out.append(torch.softmax(logits.double(), 1).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.classes)))
        return probs if raw or not self.calibrated or not len(probs) else \
            scale(probs, self.temperature)

    def frame(self, images: list, raw: bool = False) -> "object":
        """A pandas frame: predicted class and prob_<class> per image, in input order
        (calibrated probabilities unless `raw`)."""
        import pandas as pd

        from mribench.stats.metrics import safe_name

        probs = self.probabilities([self.pixels(i) for i in images], raw=raw)
        names = np.asarray(self.classes, dtype=object)
        frame = pd.DataFrame({"predicted": names[probs.argmax(1)] if len(probs) else []})
        for i, name in enumerate(self.classes):
            frame[f"prob_{safe_name(name)}"] = probs[:, i]
        return frame


def logged_size_mb(name: str, num_classes: int = 4) -> float:
    """What one cell's logged model of zoo entry `name` stores (MiB): the float32 state dict of
    the whole network with the default linear head for `num_classes`, at its input size. Other
    heads add their own layers (a flatten_mlp head grows with the image side)."""
    from mribench.config.schema import ModelConfig, StrategyConfig
    from mribench.models import strategies
    from mribench.models.build import build

    built = build(ModelConfig(name=name), StrategyConfig(name=strategies.FULL.name), num_classes,
                  load_weights=False)
    return state_dict_bytes(built.model) / 2**20
