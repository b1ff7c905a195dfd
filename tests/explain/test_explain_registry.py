"""Grad-CAM works for every registered architecture, on two real MRI images at a tiny size.

Untrained networks often have no positive evidence at their last stage (an all-zero map is a
correct answer), so the check is against the textbook formula computed here by hand, on the
registry's layer: ReLU(sum_k mean(dy/dA_k) * A_k), upsampled.
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mribench.config.schema import ExplainConfig, ModelConfig, StrategyConfig
from mribench.explain import explainer as explain
from mribench.models import registry
from mribench.models.build import build
from real_data import mri_7023

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mri() -> list[np.ndarray]:
    test = mri_7023()[1] / "Testing"  # the full set when here, else the shipped sample
    files = [sorted((test / c).glob("*.jpg"))[0] for c in ("glioma", "pituitary")]
    return [Image.open(f).convert("RGB") for f in files]


def as_grid(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A layer output as [B, C, S, S]: transformer tokens lose the class tokens in front of the
    S*S patch tokens, Swin's [B, H, W, C] is permuted."""
    if layout == "NLC":
        side = int(t.shape[1] ** 0.5)
        return t[:, t.shape[1] - side * side:].reshape(len(t), side, side, -1).permute(0, 3, 1, 2)
    return t.permute(0, 3, 1, 2) if layout == "NHWC" else t


def reference_gradcam(model, layer, inputs, size, layout="NCHW") -> np.ndarray:
    outputs = []
    handle = layer.register_forward_hook(lambda m, i, o: outputs.append(o))
    model.eval()
    logits = model(inputs.clone().requires_grad_(True))
    handle.remove()
    assert len(outputs) == 1, "Grad-CAM layer runs more than once per forward pass"
    act = outputs[0]
    score = logits[torch.arange(len(logits)), logits.argmax(1)].sum()
    grads, = torch.autograd.grad(score, act)
    act, grads = as_grid(act, layout), as_grid(grads, layout)
    assert act.dim() == 4 and act.shape[1] > 1, f"not a feature map: {tuple(act.shape)}"
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * act).sum(dim=1, keepdim=True))
    return F.interpolate(cam.double(), size=(size, size), mode="bilinear")[:, 0].detach().numpy()


@pytest.mark.parametrize("name", registry.names())
def test_gradcam_on_every_architecture(name, mri):
    spec = registry.get(name)
    patch = spec.extra.get("patch_size") or 1  # a ViT takes a multiple of its patch
    size = -(-max(64, spec.min_size) // patch) * patch  # inception_v3 needs 75 px
    torch.manual_seed(0)
    built = build(ModelConfig(name=name), StrategyConfig(name="scratch"), num_classes=4,
                  in_chans=3, image_size=size)
    raw = [np.asarray(img.resize((size, size), Image.BILINEAR)) for img in mri]
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    inputs = (torch.from_numpy(np.stack(raw)).permute(0, 3, 1, 2).float() / 255 - mean) / std
    cfg = ExplainConfig(methods=["gradcam"], faithfulness=False, randomisation="none")
    result = explain.explain(built.model, built.gradcam_layer(), raw, inputs, [0, 3], CLASSES, cfg,
                             channels_last=spec.layout == "NHWC")
    cams = result.maps["gradcam"]
    assert cams.shape == (2, size, size)
    assert np.all(np.isfinite(cams)) and cams.min() >= 0 and cams.max() <= 1
    expected = reference_gradcam(built.model, built.gradcam_layer(), inputs, size, spec.layout)
    # pytorch-grad-cam min-max scales the map, with a 1e-7 guard that is not negligible on the
    # tiny CAMs of untrained networks: compare up to scale, by correlation
    for got, want in zip(cams, expected, strict=True):
        if np.ptp(want) <= 1e-6 * np.abs(want).max():
            assert got.max() == 0  # a constant map (e.g. a 1x1 feature map) carries nothing
        else:
            assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99
    assert set(result.figures) == {"gradcam"}
    plt.close(result.figures["gradcam"])
