"""Parameter counts and layer-type counts (Study A's tables).

Layers are counted as the operations one forward pass executes, caught with a TorchFunctionMode,
so functional activations (torchvision's GoogLeNet calls F.relu) and modules reused several times
(one ReLU module per ResNet block) count the way a Keras model lists its layers.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_CATEGORY = {
    "conv": {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
             "conv_transpose3d"},
    "dense": {"linear", "bilinear"},
    "activation": {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "silu", "gelu", "sigmoid",
                   "sigmoid_", "tanh", "hardswish", "hardsigmoid", "leaky_relu", "elu", "selu",
                   "mish", "softmax", "prelu"},
    "norm": {"batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm"},
    # pooling, dropout, padding, concatenation and flattening; arithmetic and reshapes are not layers
    "other": {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
              "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
              "max_pool2d_with_indices", "adaptive_max_pool2d_with_indices", "dropout",
              "dropout2d", "alpha_dropout", "feature_alpha_dropout", "pad", "cat", "flatten",
              "mean"},
}
_LOOKUP = {op: cat for cat, ops in _CATEGORY.items() for op in ops}


class _OpCounter(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        category = _LOOKUP.get(getattr(func, "__name__", ""))
        if category:
            self.counts[category] += 1
        return func(*args, **(kwargs or {}))


def layer_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Count conv / dense / activation / norm / other layers run by one eval forward pass."""
    was_training = model.training
    model.eval()
    counter = _OpCounter()
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
    return {f"layers_{cat}": counter.counts.get(cat, 0) for cat in _CATEGORY}


def param_counts(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Keras lists batch-norm moving mean/variance among its "non-trainable params"; logged apart
    # so Keras-style totals (Study A's table) are params_total + params_bn_statistics
    bn_stats = sum(b.numel() for name, b in model.named_buffers()
                   if name.endswith(("running_mean", "running_var")))
    return {"params_total": total, "params_trainable": trainable,
            "params_non_trainable": total - trainable, "params_bn_statistics": bn_stats}
