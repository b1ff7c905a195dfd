"""Explain a trained model on a few test images: maps, grids and the checks that say how far to
trust them.

Methods: the CAM family (explain_gradcam: Grad-CAM, HiResCAM, Grad-CAM++, LayerCAM) and LIME
restricted to the brain (explain_lime). Every method explains the model's *predicted* class, on
test images picked by file identity (select_images), so every cell of a suite shows the same
files. Each image gets a brain mask (mribench.data.masks, drawn as a cyan outline); each map is
scored by where its heat falls (in-mask fraction), by the model-randomisation check and by
faithfulness (explain_checks). Only explain*.py import pytorch-grad-cam and lime (inside
functions: heavy).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from mribench.config.schema import ExplainConfig
from mribench.explain import cams, checks
from mribench.explain import lime_maps as explain_lime
from mribench.explain.faithfulness import deletion_insertion
from mribench.explain.inputs import affine_from, as_float_images
from mribench.report import run_figures as plots

TITLES = {**cams.TITLES, "lime": "LIME"}


@dataclass
class ExplainResult:
    figures: dict[str, Figure] = field(default_factory=dict)  # method -> grid
    metrics: dict[str, float] = field(default_factory=dict)  # scores, checks and seconds
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [N, H, W] saliency
    randomised: dict[str, np.ndarray] = field(default_factory=dict)  # same, randomised model
    curves: dict[str, list[float]] = field(default_factory=dict)  # cascading: rho per stage
    masks: np.ndarray | None = None  # [N, H, W] bool brain masks
    preds: np.ndarray | None = None
    tags: dict[str, str] = field(default_factory=dict)  # layers used, hiding, flags
    flags: list[str] = field(default_factory=list)  # warnings, one line each


def select_images(files: list[str], labels: list[int], num_classes: int, per_class: int,
                  seed: int) -> list[int]:
    """Indices of `per_class` test images per class, chosen by file identity: each file's rank is
    a hash of (seed, its path), so every cell (any model, strategy, order of the list) that has a
    file in its test split ranks it the same way and the suite's grids show the same files."""
    labels = np.asarray(labels)
    if len(files) != len(labels):
        raise ValueError(f"select_images: {len(files)} files for {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], "
                         f"got range [{labels.min()}, {labels.max()}]")
    rank = [hashlib.sha256(f"{seed}:{f}".encode()).hexdigest() for f in files]
    picks: list[int] = []
    for c in range(num_classes):
        members = sorted(np.flatnonzero(labels == c), key=lambda i: (rank[i], files[i]))
        picks += [int(i) for i in members[:per_class]]
    return picks


def explain(model: nn.Module, layers: nn.Module | dict[str, nn.Module], raw: list[np.ndarray],
            inputs: torch.Tensor, labels: list[int], classes: list[str], cfg: ExplainConfig,
            device: str = "cpu", masks: np.ndarray | None = None,
            stages: list[list[str]] | None = None, channels_last: bool = False) -> ExplainResult:
    """Explain `inputs` [N, C, H, W] (normalised) whose unnormalised uint8 images are `raw`.

    layers: the CAM target layer, or one per CAM method. masks: brain masks (computed from raw
    when None). stages: module names of `model`, top first, for cascading randomisation.
    channels_last: the layers' 4-D outputs are [B, H, W, C] (timm's Swin); 3-D outputs are
    transformer tokens [B, T, D] either way."""
    from mribench.data.masks import brain_mask

    images = as_float_images(raw, inputs)
    if len(labels) != len(images) or not all(0 <= y < len(classes) for y in labels):
        raise ValueError(f"explain: need one label in [0, {len(classes) - 1}] per image, "
                         f"got {list(labels)} for {len(images)} images")
    masks = np.stack([brain_mask(r) for r in raw]) if masks is None else np.asarray(masks, bool)
    if masks.shape != (len(images), *inputs.shape[-2:]):
        raise ValueError(f"explain: masks of shape {masks.shape} for inputs {tuple(inputs.shape)}")
    to_input = affine_from(raw, inputs)
    targets = _layers_by_method(layers, cfg.methods)
    modes = {m: m.training for m in model.modules()}  # restored exactly (frozen parts stay eval)
    model.eval()
    inputs = inputs.to(device)
    try:
        unique = list({id(m): m for m in targets.values()}.values())
        probs, outs = cams.predict_and_probe(model, unique, inputs)
        tokens = {id(m): cams.layout_of(o, channels_last) for m, o in zip(unique, outs, strict=True)}
        prefix = cams.prefix_tokens(model)
        sides = {id(m): cams.map_side(o, tokens[id(m)], prefix)
                 for m, o in zip(unique, outs, strict=True)}
        preds = probs.argmax(1)
        result = ExplainResult(masks=masks, preds=preds)
        result.metrics["mask_area_fraction"] = float(masks.mean())
        run = _Runner(images, masks, preds, inputs, to_input, cfg, device, tokens)
        titles = [f"true: {classes[y]}\npred: {classes[p]} ({probs[i, p]:.2f})"
                  for i, (y, p) in enumerate(zip(labels, preds, strict=True))]
        for method in cfg.methods:
            t0 = time.perf_counter()
            maps = run(method, model, targets.get(method))
            result.metrics[f"{method}_seconds"] = time.perf_counter() - t0
            result.maps[method] = maps
            legend = _describe(method, model, targets.get(method), sides, run, result)
            _score_placement(method, maps, masks, cfg, result)
            result.figures[method] = plots.explanation_grid(
                images, run.overlays(method, maps), titles, TITLES[method], legend,
                correct=[p == y for p, y in zip(preds, labels, strict=True)],
                notes=["empty map" if np.ptp(m) == 0 else "" for m in maps], outlines=masks)
            if cfg.faithfulness:
                result.metrics |= checks.faithfulness_scores(method, model, inputs, maps, preds,
                                                      to_input, cfg)
        if cfg.methods and cfg.randomisation != "none":
            _randomisation(model, targets, run, stages, cfg, result)
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
    result.tags["explain_flags"] = "; ".join(result.flags) or "none"
    return result


class _Runner:
    """Runs one method on a model (the trained one or a randomised copy) on the same images."""

    def __init__(self, images, masks, preds, inputs, to_input, cfg, device, tokens):
        self.images, self.masks, self.preds, self.inputs = images, masks, preds, inputs
        self.to_input, self.cfg, self.device, self.tokens = to_input, cfg, device, tokens
        self.segments: list[np.ndarray] | None = None  # LIME's, reused for the randomised model
        self.hidden_values = np.array([])  # LIME's background value per image

    def __call__(self, method: str, model: nn.Module, layer: nn.Module | None,
                 token_key: int | None = None) -> np.ndarray:
        if method == "lime":
            classify = explain_lime.classifier(model, self.to_input, self.device)
            maps, segs, values = explain_lime.lime_maps(classify, self.images, self.masks,
                                                        self.preds, self.cfg, self.segments)
            self.segments, self.hidden_values = segs, values
            return maps
        key = id(layer) if token_key is None else token_key
        return cams.cam_maps(method, model, layer, self.inputs, self.preds, self.tokens[key])

    def overlays(self, method: str, maps: np.ndarray) -> list[np.ndarray]:
        if method == "lime":
            return explain_lime.lime_overlays(self.images, maps, self.segments,
                                              self.cfg.lime_features)
        return cams.cam_overlays(self.images, maps)


def _layers_by_method(layers, methods) -> dict[str, nn.Module]:
    wanted = [m for m in methods if m in cams.TITLES]
    if isinstance(layers, nn.Module):
        return {m: layers for m in wanted}
    missing = [m for m in wanted if m not in (layers or {})]
    if missing:
        raise ValueError(f"explain: no target layer given for {missing}")
    return {m: layers[m] for m in wanted}


def _describe(method, model, layer, sides, run: _Runner, result: ExplainResult) -> str:
    """The figure's legend; records the layer (or the hiding) in the result's tags."""
    cfg = run.cfg
    if method == "lime":
        hide = "the scan's background value" if cfg.lime_hide == "background" else \
            "a blurred copy of the image"
        result.tags["explain_lime_hide"] = cfg.lime_hide
        if cfg.lime_hide == "background":  # the value the scans' own background has, 0..255
            result.metrics["lime_background_value"] = float(np.mean(run.hidden_values) * 255)
        return (f"top {cfg.lime_features} of ~{cfg.lime_segments} superpixels inside the brain "
                f"(cyan outline): green supports the predicted class, red opposes it; hidden "
                f"superpixels take {hide}")
    name = next((n for n, m in model.named_modules() if m is layer), type(layer).__name__)
    name = name.removeprefix("backbone.net.")
    side = sides[id(layer)]
    result.tags[f"explain_layer_{method}"] = f"{name} ({side}x{side})"
    result.metrics[f"{method}_map_side"] = side
    return (f"at {name}, a {side}x{side} map: heat for the predicted class (red = most "
            f"important); cyan: brain mask")


def _score_placement(method, maps, masks, cfg: ExplainConfig, result: ExplainResult) -> None:
    empty = maps.max(axis=(1, 2)) == maps.min(axis=(1, 2))
    # An all-zero map: nothing raises the class score (CAMs keep positive evidence only; a 1x1
    # feature map is constant), or LIME found no superpixel that matters.
    result.metrics[f"{method}_empty_fraction"] = float(empty.mean())
    inside = checks.in_mask_fraction(maps, masks)
    if np.isnan(inside).all():
        return  # every map empty: nothing landed anywhere
    fraction = float(np.nanmean(inside))
    flagged = fraction < cfg.min_in_mask
    result.metrics |= {f"{method}_in_mask_fraction": fraction,
                       f"{method}_flag_outside_brain": float(flagged)}
    if flagged:
        result.flags.append(f"{method}: only {fraction:.2f} of the heat inside the brain mask "
                            f"(< {cfg.min_in_mask}; a uniform map would give "
                            f"{masks.mean():.2f})")


def _randomisation(model, targets, run: _Runner, stages, cfg: ExplainConfig,
                   result: ExplainResult) -> None:
    t0 = time.perf_counter()
    segments = run.segments
    for _, twin in checks.randomised_models(model, cfg.randomisation, stages, cfg.seed):
        twin.eval()
        for method in cfg.methods:
            layer = targets.get(method)
            maps = run(method, twin, None if layer is None else
                       checks.same_module(model, twin, layer), id(layer))
            rho = checks.rank_correlation(result.maps[method], maps, result.masks)
            result.curves.setdefault(method, []).append(
                float(np.nanmean(rho)) if not np.isnan(rho).all() else float("nan"))
            result.randomised[method] = maps
        run.segments = segments
    for method, curve in result.curves.items():
        rho = curve[-1]  # everything re-initialised (the last cascading stage)
        result.metrics[f"{method}_randomisation_spearman"] = rho
        flagged = bool(rho >= cfg.max_random_spearman)
        result.metrics[f"{method}_flag_randomisation"] = float(flagged)
        if flagged:
            result.flags.append(f"{method}: maps barely change when the model's weights are "
                                f"randomised (Spearman {rho:.2f} >= {cfg.max_random_spearman})")
    result.metrics["randomisation_seconds"] = time.perf_counter() - t0
