"""How a cell runs fast on its device: precision, memory format, cuDNN, loader workers, compile.

`auto` settings resolve from the device, so a suite written on a laptop gets the fast path on a
GPU box unchanged: bf16 autocast on CUDA devices that support it (Ampere and later), fp16 with a
gradient scaler on older ones, fp32 on CPU. CPU bf16 autocast is available as `precision: bf16`
(its speed depends on the CPU's bf16 instructions; `mribench perf` measures it), but `auto` keeps
CPU results in fp32, comparable with every CPU run before.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from mribench.train import threads

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CUDA_WORKERS_MAX = 8  # enough to feed one GPU from the uint8 store; more only costs memory


def resolve_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    return name


def resolve_precision(precision: str, device: str) -> str:
    """The precision a cell actually trains in: fp32, bf16 or fp16."""
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@dataclass
class Precision:
    """Autocast for forward passes and, for fp16, a gradient scaler for backward and step."""
    name: str  # resolved: fp32 | bf16 | fp16
    device: str

    def __post_init__(self):
        kind = torch.device(self.device).type
        self.scaler = torch.amp.GradScaler(kind) if self.name == "fp16" else None

    @classmethod
    def of(cls, precision: str, device: str) -> "Precision":
        return cls(resolve_precision(precision, device), device)

    def autocast(self):
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=DTYPES[self.name])

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimizer step (scaled for fp16: steps with inf/NaN gradients are
        skipped by the scaler, which then lowers its scale)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def channels_last(device: str) -> bool:
    """Conv kernels on CUDA (cuDNN, tensor cores) are fastest on NHWC; CPU stays NCHW."""
    return str(device).startswith("cuda")


def place(model: nn.Module, device: str) -> nn.Module:
    """Move a model to its device, in channels-last layout where that is the fast one."""
    model.to(device)
    if channels_last(device) and has_conv(model):
        model.to(memory_format=torch.channels_last)
    return model


def configure(deterministic: bool, device: str) -> dict[str, object]:
    """Process-wide kernel choices for the next cell; returns what was set, for the run's params.

    Without `deterministic`, cuDNN benchmarks its convolution algorithms for each new input shape
    and keeps the fastest (a few slow first batches, then faster epochs; results may vary in the
    last bits between runs). `deterministic: true` turns that off and asks torch for
    deterministic algorithms: CUDA reruns become bit-identical at the cost of the autotuned
    kernels, and ops with no deterministic CUDA kernel warn. CPU runs are deterministic anyway.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    cuda = str(device).startswith("cuda")
    torch.backends.cudnn.benchmark = cuda and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark, "deterministic": deterministic}


def workers(setting: int | str, device: str) -> int:
    """Loader worker processes. `auto`: on CUDA one per CPU of the cell's share (threads.py:
    Ray's cpus_per_cell, --threads, the machine's cores) left after the training process (at
    most 8), so cells sharing a machine do not start a full set of workers each; on CPU none,
    since the model wants every core and reading uint8 rows from the store costs far less than
    a training step."""
    if setting != "auto":
        return int(setting)
    if not str(device).startswith("cuda"):
        return 0
    return max(0, min(CUDA_WORKERS_MAX, threads.cell_cpus() - 1))
