"""How far to trust a saliency map: where its heat falls, whether it depends on the trained
weights at all, and how faithful it is to the model.

- In-mask fraction: the share of |attribution| inside the brain mask. A uniform map scores the
  mask's area; heat on the background (the black corners) lowers it.
- Model randomisation (Adebayo et al., "Sanity checks for saliency maps", 2018): the same method
  on a copy of the model whose weights are re-initialised; the Spearman rank correlation of
  |map| between trained and randomised model, inside the brain mask (shared zeros outside would
  inflate it). A method whose maps barely change explains the image, not the model.
- Faithfulness: deletion / insertion areas (mribench.explain.faithfulness) and ROAD (pytorch-grad-cam).
"""
from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import torch
from torch import nn

from mribench.config.schema import ExplainConfig
from mribench.explain.faithfulness import deletion_insertion

ROAD_PERCENTILES = [20, 40, 60, 80]  # fewer than the paper's 9: each one solves a sparse system


def in_mask_fraction(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the fraction of |map| inside the mask; NaN for an all-zero map."""
    mass = np.abs(np.asarray(maps, dtype=np.float64))
    total = mass.sum(axis=(1, 2))
    inside = (mass * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def rank_correlation(trained: np.ndarray, randomised: np.ndarray,
                     masks: np.ndarray) -> np.ndarray:
    """Per image, Spearman's rho of |trained| vs |randomised| over the brain mask's pixels.

    NaN where the trained map is flat there (it ranks nothing); 0 where only the randomised map
    is flat (the ranking is gone)."""
    from scipy.stats import spearmanr

    out = []
    for a, b, m in zip(trained, randomised, masks, strict=True):
        x, y = np.abs(a[m]), np.abs(b[m])
        if x.size < 3 or np.ptp(x) == 0:
            out.append(np.nan)
        elif np.ptp(y) == 0:
            out.append(0.0)
        else:
            out.append(float(spearmanr(x, y).statistic))
    return np.asarray(out)


def reinitialise(modules: list[nn.Module], seed: int) -> None:
    """Re-initialise every weight under `modules` in place, seeded: layers with their library's
    own init (reset_parameters; batch-norm statistics too), any other parameter (class tokens,
    layer scales) by a random permutation of its values."""
    params = [p for m in modules for p in m.parameters()]
    devices = sorted({p.device.index or 0 for p in params if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed_all(seed)
        reset: set[int] = set()
        for module in modules:
            for m in module.modules():
                if callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()
                    reset.update(id(p) for p in m.parameters(recurse=False))
        for p in params:
            if id(p) not in reset:
                flat = p.detach().flatten()
                p.copy_(flat[torch.randperm(flat.numel(), device=p.device)].view_as(p))


def randomised_models(model: nn.Module, mode: str, stages: list[list[str]] | None, seed: int):
    """Yield (stages re-initialised, copy of `model`): one fully re-initialised copy (full), or
    copies with the top 1, 2, ... stages re-initialised, top first (cascading). A stage names
    modules, or parameters held by a module spanning stages (a ViT's cls_token)."""
    from mribench.models.archs import group_member

    if mode == "full":
        twin = copy.deepcopy(model)
        reinitialise([twin], seed)
        yield 1, twin
        return
    stages = stages or [[n] for n, _ in reversed(list(model.named_children()))]
    twin = copy.deepcopy(model)
    for k, names in enumerate(stages, 1):
        reinitialise([group_member(twin, n) for n in names], seed + k)
        yield k, twin


def same_module(model: nn.Module, twin: nn.Module, module: nn.Module) -> nn.Module:
    """`module` of `model` as it sits in `twin` (a deep copy)."""
    for name, m in model.named_modules():
        if m is module:
            return twin.get_submodule(name)
    raise ValueError(f"explain: layer {type(module).__name__} is not a submodule of the model")


def faithfulness_scores(method: str, model, inputs, maps, preds, to_input,
                 cfg: ExplainConfig) -> dict[str, float]:
    """Deletion and insertion areas and ROAD for one method's maps."""
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
