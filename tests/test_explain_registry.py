"""Grad-CAM works for every registered architecture, on two real MRI images at a tiny size."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import explain
from benchmark.config import ExplainConfig, ModelConfig, StrategyConfig
from benchmark.models import build, registry

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def mri(data_dir: Path) -> list[np.ndarray]:
    test = data_dir / "brain-tumor-mri-7023" / "Testing"
    files = [sorted((test / c).glob("*.jpg"))[0] for c in ("glioma", "pituitary")]
    return [Image.open(f).convert("RGB") for f in files]


@pytest.mark.parametrize("name", registry.names())
def test_gradcam_on_every_architecture(name, mri):
    spec = registry.get(name)
    size = max(64, spec.min_size)  # inception_v3 needs 75 px
    torch.manual_seed(0)
    built = build(ModelConfig(name=name), StrategyConfig(name="scratch"), num_classes=4,
                  in_chans=3, image_size=size)
    raw = [np.asarray(img.resize((size, size), Image.BILINEAR)) for img in mri]
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    inputs = (torch.from_numpy(np.stack(raw)).permute(0, 3, 1, 2).float() / 255 - mean) / std
    cfg = ExplainConfig(methods=["gradcam"], faithfulness=False)
    result = explain.explain(built.model, built.gradcam_layer(), raw, inputs, [0, 3], CLASSES, cfg)
    cams = result.maps["gradcam"]
    assert cams.shape == (2, size, size)
    assert np.all(np.isfinite(cams)) and cams.min() >= 0 and cams.max() <= 1
    # even an untrained network has positive evidence somewhere at its last stage
    assert result.metrics["gradcam_empty_fraction"] < 1, "Grad-CAM map empty for both images"
    assert set(result.figures) == {"gradcam"}
    plt.close(result.figures["gradcam"])
