"""Grad-CAM and LIME explanations of a trained model, their grids, and faithfulness scores.

The only module that imports pytorch-grad-cam and lime (imported inside functions: heavy).
Every method explains the model's *predicted* class, on the same seeded test images in every cell
of a suite (select_images), so maps of different models can be set side by side; each saliency
map is then scored by the same faithfulness metrics (mribench.faithfulness, plus ROAD).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from mribench import plots
from mribench.config import ExplainConfig
from mribench.faithfulness import deletion_insertion

ROAD_PERCENTILES = [20, 40, 60, 80]  # fewer than the paper's 9: each one solves a sparse system
TITLES = {"gradcam": "Grad-CAM", "lime": "LIME"}
LEGENDS = {
    "gradcam": "heat map for the predicted class (red = most important)",
    "lime": "top {k} of ~{s} superpixels: green supports the predicted class, red opposes it",
}


@dataclass
class ExplainResult:
    figures: dict[str, Figure] = field(default_factory=dict)  # method -> grid
    metrics: dict[str, float] = field(default_factory=dict)  # faithfulness and seconds
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [N, H, W] saliency


def select_images(labels: list[int], num_classes: int, per_class: int, seed: int) -> list[int]:
    """Seeded picks of `per_class` test indices per class (all of a class if it has fewer).

    Each class draws from its own generator, so the picks depend only on (seed, labels).
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], "
                         f"got range [{labels.min()}, {labels.max()}]")
    picks: list[int] = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, c])
        chosen = rng.choice(members, size=min(per_class, members.size), replace=False)
        picks += sorted(chosen.tolist())
    return picks


def explain(model: nn.Module, target_layer: nn.Module, raw: list[np.ndarray], inputs: torch.Tensor,
            labels: list[int], classes: list[str], cfg: ExplainConfig,
            device: str = "cpu") -> ExplainResult:
    """Explain `inputs` [N, C, H, W] (normalised) whose unnormalised uint8 images are `raw`."""
    images = _as_float_images(raw, inputs)
    if len(labels) != len(images) or not all(0 <= y < len(classes) for y in labels):
        raise ValueError(f"explain: need one label in [0, {len(classes) - 1}] per image, "
                         f"got {list(labels)} for {len(images)} images")
    to_input = _affine_from(raw, inputs)
    modes = {m: m.training for m in model.modules()}  # restored exactly (frozen parts stay eval)
    model.eval()
    inputs = inputs.to(device)
    try:
        probs, layer_out = _predict_and_probe(model, target_layer, inputs)
        preds = probs.argmax(1)
        titles = [f"true: {classes[y]}\npred: {classes[p]} ({probs[i, p]:.2f})"
                  for i, (y, p) in enumerate(zip(labels, preds, strict=True))]
        result = ExplainResult()
        for method in cfg.methods:
            t0 = time.perf_counter()
            if method == "gradcam":
                maps, overlays = _gradcam(model, target_layer, inputs, preds, images, layer_out)
            else:
                maps, overlays = _lime(model, images, preds, to_input, cfg, device)
            result.metrics[f"{method}_seconds"] = time.perf_counter() - t0
            # An all-zero map: nothing raises the class score (Grad-CAM keeps positive evidence
            # only; a 1x1 feature map is constant), or LIME found no superpixel that matters.
            empty = maps.max(axis=(1, 2)) == maps.min(axis=(1, 2))
            result.metrics[f"{method}_empty_fraction"] = float(empty.mean())
            result.maps[method] = maps
            result.figures[method] = plots.explanation_grid(
                images, overlays, titles, TITLES[method],
                LEGENDS[method].format(k=cfg.lime_features, s=cfg.lime_segments),
                correct=[p == y for p, y in zip(preds, labels, strict=True)],
                notes=["empty map" if e else "" for e in empty])
            if cfg.faithfulness:
                result.metrics |= _faithfulness(method, model, inputs, maps, preds, to_input, cfg)
        if cfg.faithfulness and cfg.methods:
            # What an uninformative map scores on the same model and images: the floor to beat.
            noise = np.random.default_rng(cfg.seed).random((len(preds), *inputs.shape[-2:]))
            d, i = deletion_insertion(model, inputs, noise, list(preds), to_input(0.0),
                                      seed=cfg.seed)
            result.metrics |= {"random_deletion_auc": float(d.mean()),
                               "random_insertion_auc": float(i.mean())}
    finally:
        for module, training in modes.items():
            module.training = training
    return result


def _as_float_images(raw: list[np.ndarray], inputs: torch.Tensor) -> list[np.ndarray]:
    """raw uint8 [H, W(, C)] to float RGB [H, W, 3] in [0, 1], checked against inputs."""
    if inputs.dim() != 4 or len(raw) != inputs.shape[0] or not len(raw):
        raise ValueError(f"explain: {len(raw)} raw images for inputs of shape "
                         f"{tuple(inputs.shape)}")
    out = []
    for i, img in enumerate(raw):
        img = np.asarray(img)
        img = img[..., None] if img.ndim == 2 else img
        size = tuple(inputs.shape[-2:])
        if img.dtype != np.uint8 or img.shape[:2] != size or img.shape[2] not in (1, 3):
            raise ValueError(f"explain: raw image {i} must be uint8 [H, W, 1|3] with H, W = "
                             f"{size}, got {img.dtype} {img.shape}")
        out.append(np.repeat(img, 3, axis=2).astype(np.float64) / 255 if img.shape[2] == 1
                   else img.astype(np.float64) / 255)
    return out


def _affine_from(raw: list[np.ndarray], inputs: torch.Tensor):
    """Recover the per-channel normalisation inputs = a * raw + b (raw in 0..255) by least squares,
    so LIME's perturbed images and deleted pixels go through exactly the caller's preprocessing."""
    x = np.stack([np.asarray(r).reshape(*r.shape[:2], -1) for r in raw]).astype(np.float64)
    y = inputs.detach().cpu().double().numpy()
    a, b = np.empty(y.shape[1]), np.empty(y.shape[1])
    for c in range(y.shape[1]):
        xc, yc = x[..., min(c, x.shape[-1] - 1)].ravel(), y[:, c].ravel()
        if xc.std() == 0:
            raise ValueError("explain: raw images are constant, cannot relate them to inputs")
        a[c], b[c] = np.polyfit(xc, yc, 1)
        if np.abs(a[c] * xc + b[c] - yc).max() > 1e-3 * max(1.0, np.abs(yc).max()):
            raise ValueError(f"explain: inputs channel {c} is not a per-channel affine "
                             "normalisation of the raw images (augmented or resized differently?)")

    def to_input(pixels) -> torch.Tensor:
        """uint8-scale pixels [..., H, W, C'] (or a scalar) to model-space tensors."""
        if np.isscalar(pixels):
            return torch.tensor(a * pixels + b, dtype=torch.float32)
        pixels = np.asarray(pixels, dtype=np.float64)[..., : len(a)]
        return torch.from_numpy(a * pixels + b).float().permute(0, 3, 1, 2).contiguous()
    return to_input


@torch.no_grad()
def _predict_and_probe(model, layer, inputs) -> tuple[np.ndarray, torch.Tensor]:
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        probs = torch.softmax(model(inputs), dim=1).float().cpu().numpy()
    finally:
        handle.remove()
    if not seen or not isinstance(seen[0], torch.Tensor):
        raise ValueError(f"explain: Grad-CAM target layer {type(layer).__name__} did not produce a "
                         "tensor in the model's forward pass (is it a submodule of this model?)")
    return probs, seen[0]


def _tokens_to_grid(tensor: torch.Tensor) -> torch.Tensor:
    """Transformer tokens [B, T, D] to a [B, D, S, S] map, dropping class/register tokens."""
    side = math.isqrt(tensor.shape[1])
    grid = tensor[:, tensor.shape[1] - side * side:, :]
    return grid.reshape(tensor.shape[0], side, side, -1).permute(0, 3, 1, 2)


def _gradcam(model, layer, inputs, preds, images, layer_out):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    reshape = _tokens_to_grid if layer_out.dim() == 3 else None
    # The input requires grad so the layer's output does too when the backbone is frozen.
    x = inputs.detach().clone().requires_grad_(True)
    maps = None
    with torch.enable_grad(), GradCAM(model=model, target_layers=[layer],
                                      reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(p)) for p in preds])
    if maps is None or not np.all(np.isfinite(maps)):  # GradCAM.__exit__ swallows IndexError
        raise RuntimeError(f"Grad-CAM failed on layer {type(layer).__name__}")
    overlays = [show_cam_on_image(img.astype(np.float32), m, use_rgb=True)
                for img, m in zip(images, maps, strict=True)]
    return maps, overlays


def _lime(model, images, preds, to_input, cfg: ExplainConfig, device):
    from lime import lime_image
    from lime.wrappers.scikit_image import SegmentationAlgorithm
    from skimage.segmentation import mark_boundaries

    # lime's own progress bar would write one tqdm line per image to stderr
    lime_image.tqdm = lambda rows, **_: rows
    # SLIC, not lime's default quickshift: quickshift's segment count shrinks with the image
    # (about 11 at 128 px on these MRIs, so "top 10" would be nearly the whole image).
    slic = SegmentationAlgorithm("slic", n_segments=cfg.lime_segments, compactness=10,
                                    start_label=0)

    @torch.no_grad()
    def classify(batch: np.ndarray) -> np.ndarray:
        return torch.softmax(model(to_input(batch * 255).to(device)), dim=1).cpu().numpy()

    explainer = lime_image.LimeImageExplainer(random_state=cfg.seed)
    maps, overlays = [], []
    for i, (img, pred) in enumerate(zip(images, preds, strict=True)):
        exp = explainer.explain_instance(img, classify, labels=(int(pred),), top_labels=None,
                                         num_samples=cfg.lime_samples, batch_size=64,
                                         segmentation_fn=slic, random_seed=cfg.seed + i)
        weights = np.zeros(exp.segments.max() + 1)
        for seg_id, weight in exp.local_exp[int(pred)]:
            weights[seg_id] = weight
        maps.append(weights[exp.segments])
        # Top-k superpixels by |weight| (lime's order), signed. Not get_image_and_mask: it paints
        # zero-weight superpixels as positive, so a flat explanation would look all green. A
        # flat map (all weights equal, e.g. one superpixel) singles nothing out: paint nothing.
        top = [] if np.ptp(maps[-1]) == 0 else \
            [(seg_id, w) for seg_id, w in exp.local_exp[int(pred)] if w != 0][:cfg.lime_features]
        mask = np.zeros_like(exp.segments)
        for seg_id, weight in top:
            mask[exp.segments == seg_id] = 1 if weight > 0 else -1
        tint = img.copy()
        for sign, colour in ((1, (0.0, 1.0, 0.0)), (-1, (1.0, 0.0, 0.0))):
            tint[mask == sign] = 0.55 * img[mask == sign] + 0.45 * np.array(colour)
        overlays.append(mark_boundaries(tint, mask, color=(1, 1, 0)))
    return np.stack(maps), overlays


def _faithfulness(method, model, inputs, maps, preds, to_input, cfg) -> dict[str, float]:
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    t0 = time.perf_counter()
    d, i = deletion_insertion(model, inputs, maps, list(preds), to_input(0.0), seed=cfg.seed)
    lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    scaled = ((maps - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)  # ROAD wants [0, 1]
    with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
        torch.manual_seed(cfg.seed)  # ROAD's imputer adds torch noise: seed it locally
        # ROAD passes torch tensors to numpy functions; numpy 2 warns about it once per call
        warnings.filterwarnings("ignore", message="__array_wrap__", category=DeprecationWarning)
        road = ROADCombined(percentiles=ROAD_PERCENTILES)(
            inputs, scaled, [ClassifierOutputSoftmaxTarget(int(p)) for p in preds], model)
    return {f"{method}_deletion_auc": float(d.mean()), f"{method}_insertion_auc": float(i.mean()),
            f"{method}_road_combined": float(np.mean(road)),
            f"{method}_faithfulness_seconds": time.perf_counter() - t0}
