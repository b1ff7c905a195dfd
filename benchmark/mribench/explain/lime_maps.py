"""LIME on the brain only: superpixels inside the brain mask, background never a feature.

lime_image would make every superpixel a feature, the black corners included, and hide them with
a colour no scan has, so it measured the model's reaction to an artificial border. Here SLIC runs
inside the mask; each perturbed image keeps the background as it is and replaces the hidden
brain superpixels by the scan's own background value (median outside the mask) or by a blurred
copy of the image (explain.lime_hide). The weighted sparse linear fit is lime's own (LimeBase,
with LimeImageExplainer's kernel and feature selection), on the same kind of samples.
"""
from __future__ import annotations

import numpy as np
import torch

from mribench.config.schema import ExplainConfig

BLUR_SIGMA = 0.1  # of the image side, as the insertion metric's blurred start (faithfulness.py)
BATCH = 64


def superpixels(image: np.ndarray, mask: np.ndarray, n_segments: int) -> np.ndarray:
    """int [H, W]: 0 outside the mask, 1..n for SLIC superpixels inside it."""
    from skimage.segmentation import slic

    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int64)
    # SLIC, not lime's default quickshift: quickshift's segment count shrinks with the image
    # (about 11 at 128 px on these MRIs, so "top 10" would be nearly the whole image).
    labels = slic(image, n_segments=n_segments, compactness=10, mask=mask, start_label=1,
                  channel_axis=-1)
    labels[~mask] = 0
    present, dense = np.unique(labels, return_inverse=True)  # renumbered without gaps
    dense = dense.reshape(labels.shape)
    return dense if present[0] == 0 else dense + 1  # no background (mask everywhere): from 1


def hidden_image(image: np.ndarray, mask: np.ndarray, how: str) -> tuple[np.ndarray, float]:
    """What hidden superpixels show, and the background value used (NaN when blurred)."""
    if how == "blur":
        from skimage.filters import gaussian

        sigma = BLUR_SIGMA * min(image.shape[:2])
        return gaussian(image, sigma=sigma, channel_axis=-1), float("nan")
    outside = image[~mask]
    value = np.median(outside, axis=0) if outside.size else np.zeros(image.shape[-1])
    return np.broadcast_to(value, image.shape).copy(), float(np.mean(value))


def lime_maps(classify, images: list[np.ndarray], masks: np.ndarray, preds, cfg: ExplainConfig,
              segments: list[np.ndarray] | None = None):
    """Signed weight maps [N, H, W] (0 outside the mask), the superpixels, and per image the
    background value hidden superpixels took (in [0, 1]; NaN when blurred).

    classify: float images [B, H, W, 3] in [0, 1] -> class probabilities [B, K] (numpy).
    segments: reuse these superpixels (the randomisation check compares like with like).
    """
    from lime.lime_image import LimeImageExplainer
    from sklearn.metrics import pairwise_distances

    explainer = LimeImageExplainer(random_state=cfg.seed)  # its kernel and feature selection
    maps, segs, hidden_values = [], [], []
    for i, (img, mask, pred) in enumerate(zip(images, masks, preds, strict=True)):
        seg = segments[i] if segments is not None else superpixels(img, mask, cfg.lime_segments)
        hidden, value = hidden_image(img, mask, cfg.lime_hide)
        n = int(seg.max())
        weights = np.zeros(n + 1)
        if n:
            rng = np.random.default_rng([cfg.seed, i])
            data = rng.integers(0, 2, (cfg.lime_samples, n))
            data[0] = 1  # the unperturbed image comes first: distances are measured from it
            probs = []
            for start in range(0, len(data), BATCH):
                on = np.concatenate([np.ones((len(data[start:start + BATCH]), 1), int),
                                     data[start:start + BATCH]], axis=1)  # background always on
                keep = on[:, seg][..., None].astype(bool)  # [B, H, W, 1]
                probs.append(classify(np.where(keep, img, hidden)))
            probs = np.concatenate(probs)
            distances = pairwise_distances(data, data[:1], metric="cosine").ravel()
            _, ranked, _, _ = explainer.base.explain_instance_with_data(
                data, probs, distances, int(pred), n,
                feature_selection=explainer.feature_selection)
            for feature, weight in ranked:
                weights[feature + 1] = weight
        maps.append(weights[seg])
        segs.append(seg)
        hidden_values.append(value)
    return np.stack(maps), segs, np.asarray(hidden_values)


def lime_overlays(images: list[np.ndarray], maps: np.ndarray, segs: list[np.ndarray],
                  top_k: int) -> list[np.ndarray]:
    """Top-k superpixels by |weight|, green for, red against the class, outlined in yellow.

    Not lime's get_image_and_mask: it paints zero-weight superpixels as positive, so a flat
    explanation would look all green. A flat map singles nothing out: paint nothing."""
    from skimage.segmentation import mark_boundaries

    out = []
    for img, m, seg in zip(images, maps, segs, strict=True):
        weights = np.zeros(seg.max() + 1)
        weights[seg.ravel()] = m.ravel()
        order = [s for s in np.argsort(-np.abs(weights)) if s and weights[s] != 0][:top_k]
        marked = np.zeros(seg.shape, dtype=int)
        if np.ptp(m) > 0:
            for s in order:
                marked[seg == s] = 1 if weights[s] > 0 else -1
        tint = img.copy()
        for sign, colour in ((1, (0.0, 1.0, 0.0)), (-1, (1.0, 0.0, 0.0))):
            tint[marked == sign] = 0.55 * img[marked == sign] + 0.45 * np.array(colour)
        out.append(mark_boundaries(tint, marked, color=(1, 1, 0)))
    return out


def classifier(model: torch.nn.Module, to_input, device: str):
    """float images [B, H, W, 3] in [0, 1] -> probabilities, through the caller's preprocessing."""
    @torch.no_grad()
    def classify(batch: np.ndarray) -> np.ndarray:
        return torch.softmax(model(to_input(batch * 255).to(device)), dim=1).float().cpu().numpy()
    return classify
