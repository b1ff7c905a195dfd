"""Parameter-efficient fine-tuning: which backbone parameters train besides the head.

bitfit  the backbone's biases only (Ben Zaken et al., 2022), by parameter name
norm    the normalisation layers' affine parameters only (batch, layer and group norm, timm's
        subclasses included), by module type
lora    low-rank adapters through Hugging Face `peft` (Hu et al., 2022): `LoraModel` injects
        them into the backbone in place and freezes everything else in it. Default targets per
        family: a ViT's attention projections (Linear modules named `qkv` and `proj`, so the
        patch embedding's `proj` convolution is not one); a CNN's plain `nn.Conv2d` with groups
        1 and `nn.Linear` layers (peft has no LoRA for depthwise or TF-"same" convolutions).
        After training the adapters are merged into the weights they adapt
        (`merge_and_unload`), so the tested, explained and logged network is the plain
        architecture and `predict` rebuilds it without peft state.

The head always trains in full. The backbone runs in train mode (its batch-norm statistics
adapt to the new images), as in the BitFit and norm-tuning papers; only the parameters named
above receive gradients.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mribench.errors import UserError

NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)
VIT_TARGETS = ("qkv", "proj")


def train_only(backbone: nn.Module, keep) -> None:
    """requires_grad on the backbone parameters `keep(name, module)` accepts, off elsewhere."""
    for mod_name, module in backbone.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            p.requires_grad_(bool(keep(f"{mod_name}.{p_name}" if mod_name else p_name, module)))


def bitfit(built) -> None:
    train_only(built.backbone, lambda name, module: name.endswith("bias"))


def norm(built) -> None:
    train_only(built.backbone, lambda name, module: isinstance(module, NORMS))


def lora_targets(net: nn.Module, names: list[str] | None) -> list[str]:
    """Full module names LoRA adapts: modules whose name ends with one of `names` (by whole
    name components), or the family default; only types peft adapts."""
    def adaptable(module: nn.Module) -> bool:  # exact types: peft rejects timm's Conv2dSame
        return type(module) is nn.Linear or (type(module) is nn.Conv2d and module.groups == 1)

    modules = [(n, m) for n, m in net.named_modules() if n and adaptable(m)]
    if names is None:
        vit = [n for n, m in modules if type(m) is nn.Linear and n.split(".")[-1] in VIT_TARGETS]
        return vit or [n for n, _ in modules]
    wanted = [n for n, _ in modules if any(n == t or n.endswith("." + t) for t in names)]
    if not wanted:
        raise UserError(f"strategy lora: targets {names} match no Linear or Conv2d (groups 1) "
                         f"module of the backbone; some it has: {[n for n, _ in modules][:8]}")
    return wanted


def lora(built) -> None:
    from peft import LoraConfig, LoraModel

    cfg = built.strategy
    targets = lora_targets(built.backbone.net, cfg.targets)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets)
    built.adapter = LoraModel(built.backbone.net, config, "default")  # injects in place
    train_only(built.backbone, lambda name, module: ".lora_" in f".{name}")
    built.info.update(lora_targets=len(targets), lora_target_names=",".join(targets)[:500])


def merge_lora(built, result=None) -> None:
    """Adapters into the weights (the plain architecture again). A kept last-epoch state
    (artifacts.model: last) is merged the same way, on a copy."""
    if getattr(built, "adapter", None) is None:
        return
    last = getattr(result, "last_state", None)
    if last is not None:
        model, adapter = copy.deepcopy((built.model, built.adapter))
        model.load_state_dict(last)
        adapter.merge_and_unload()
        result.last_state = model.state_dict()
    built.adapter.merge_and_unload()
    built.adapter = None
