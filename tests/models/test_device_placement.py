"""Tensors the pipeline makes are made on the model's device. A CPU-only machine checks this
with the meta device standing in for CUDA: a CPU tensor fed to a model on `meta` fails exactly
as it would on a GPU ("Tensor on device meta is not on the expected device cpu")."""
from __future__ import annotations

import pytest
import torch

from mribench.config.schema import ModelConfig, StrategyConfig
from mribench.models.build import build


@pytest.mark.parametrize("spec", ["stride:16", "stride:8"])
def test_stride_layers_resolve_on_the_models_device(spec):
    built = build(ModelConfig(name="test_resnet"), StrategyConfig(name="scratch"), 4,
                  image_size=32)
    built.model.to("meta")  # explanations resolve their layer after the model was placed
    name, layer = built.explain_layer(spec)
    assert name in ("layer2", "layer3") and isinstance(layer, torch.nn.Module)
    with pytest.raises(RuntimeError, match="meta"):  # the stand-in does catch a CPU tensor
        built.backbone(torch.zeros(1, 3, 32, 32))
