"""One evaluation pass: loss, accuracy, and the class probabilities and targets for metrics."""
from __future__ import annotations

import time

import torch
from torch import nn

from mribench.train.epoch import BatchHook
from mribench.train.precision import Precision


def evaluate(net: nn.Module, loader, loss_fn: nn.Module, device: str,
             on_batch: BatchHook | None = None, precision: Precision | None = None) -> dict:
    """Loss and accuracy, plus the class probabilities and targets for metrics.

    The forward pass runs in the training precision; logits are upcast to float64 before the
    softmax, so the probabilities sum to 1 to machine precision whatever the autocast dtype.
    """
    precision = precision or Precision("fp32", device)
    net.eval()
    probs, targets, loss_sum = [], [], torch.zeros((), device=device, dtype=torch.float64)
    start = time.perf_counter()
    with torch.inference_mode():
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with precision.autocast():
                logits = net(x)
            logits = logits.double()
            loss_sum += loss_fn(logits, y) * len(y)
            probs.append(torch.softmax(logits, 1))  # stays on the device: one copy at the end
            targets.append(y)
            if on_batch:
                on_batch(i + 1, len(loader))
    p = torch.cat(probs).cpu().numpy()
    t = torch.cat(targets).cpu().numpy()
    seconds = time.perf_counter() - start
    return {"loss": float(loss_sum) / len(t), "acc": float((p.argmax(1) == t).mean()),
            "seconds": seconds, "images_per_s": len(t) / seconds, "probs": p, "targets": t}
