"""Registry entries derived from timm: `timm:<name>` and the modern families (ViT, DeiT, Swin,
ConvNeXt, DINOv2) read their metadata from the architecture instead of a hand-written entry.

  mean / std, input size     the pretrained_cfg of the named (tagged) weights
  block groups               the model's own group_matcher(coarse=True) through timm's
                             group_parameters (stem, then stages or blocks); a trailing group
                             holding only the final norm joins the last block group
  Grad-CAM layer             the last feature_info module; on a class-token ViT the last
                             block's norm1 (after the last block only the class token reaches
                             the classifier, so its patch tokens get no gradient)
  weights                    hub = "<architecture>.<tag>" (timm's hf_hub_id: the HF cache)
  fixed input size           pretrained_cfg fixed_input_size (position embeddings)

The network is created on the meta device to read all this: no memory, no initialisation.
"""
from __future__ import annotations

import difflib
from functools import lru_cache

import torch
from torch import nn

from mribench.errors import UnknownName
from mribench.models.spec import TIMM_FAMILIES, TIMM_PREFIX, ModelSpec


@lru_cache(maxsize=None)
def derive(name: str) -> ModelSpec:
    import timm

    arch = TIMM_FAMILIES.get(name) or name.removeprefix(TIMM_PREFIX)
    base = arch.split(".", 1)[0]
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        raise UnknownName(f"unknown model {name!r}: timm has no architecture {base!r}; close "
                          f"timm names: {close or 'none'}")
    try:
        with torch.device("meta"):
            net = timm.create_model(arch, pretrained=False)
    except RuntimeError as err:  # a pretrained tag timm does not know, or an init meta refuses
        if "meta" in str(err).lower():
            net = timm.create_model(arch, pretrained=False)
        else:
            raise UnknownName(f"model {name!r}: {str(err).splitlines()[0]}") from None
    cfg = dict(net.pretrained_cfg)
    tag = cfg.get("tag")
    net.reset_classifier(0)  # the trunk: groups are computed without the ImageNet classifier
    groups = block_groups(net)
    layout = "NHWC" if str(getattr(net, "output_fmt", "NCHW")).upper() == "NHWC" else "NCHW"
    gradcam = cam_layer(net, groups)
    if getattr(net, "num_prefix_tokens", None) is not None:  # ViT family: [B, tokens, D]
        layout = "NLC"
    reductions = [f["reduction"] for f in getattr(net, "feature_info", []) or []]
    hub = f"{cfg['architecture']}.{tag}" if tag and (cfg.get("hf_hub_id") or cfg.get("url")) \
        else None
    return ModelSpec(
        name=name, source="timm", arch=arch, input_size=int(cfg["input_size"][-1]),
        mean=tuple(float(v) for v in cfg["mean"]), std=tuple(float(v) for v in cfg["std"]),
        notes=f"derived from timm {arch}" + (f" (pretrained tag {tag})" if tag else ""),
        groups=groups, gradcam=gradcam, min_size=max(reductions[-1:] or [16]), hub=hub,
        pooled_features=True, fixed_size=bool(cfg.get("fixed_input_size")), layout=layout,
        extra={"global_pool": str(getattr(net, "global_pool", "")),
               **({"patch_size": patch} if (patch := _patch_size(net)) else {})})


def _patch_size(net: nn.Module) -> int | None:
    """The side of a patch-embedding model's patches (ViT 16, DINOv2 14, Swin 4); None for a
    model without one (a CNN's strided stem floors its sizes like every later conv does)."""
    size = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    if isinstance(size, (tuple, list)) and size:
        size = size[0]
    return int(size) if isinstance(size, int) and size > 1 else None


def block_groups(net: nn.Module) -> tuple[tuple[str, ...], ...]:
    """The model's coarse group_matcher as tuples of member names, input to output. A member is
    the largest module whose parameters all lie in the group, or a parameter held directly by a
    module that spans groups (a ViT's cls_token / pos_embed on the root)."""
    from timm.models import group_parameters

    try:
        matcher = net.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        return (tuple(n for n, c in net.named_children() if any(True for _ in c.parameters())),)
    grouped = [names for _, names in sorted(group_parameters(net, matcher).items())]
    if len(grouped) > 1 and _only_norms(net, grouped[-1]):
        grouped[-2:] = [grouped[-2] + grouped[-1]]
    return tuple(_members(net, names) for names in grouped if names)


def _members(net: nn.Module, names: list[str]) -> tuple[str, ...]:
    mine, out, cache = set(names), [], {}

    def inside(prefix: str) -> bool:
        if prefix not in cache:
            under = {f"{prefix}.{n}" for n, _ in net.get_submodule(prefix).named_parameters()}
            cache[prefix] = under <= mine
        return cache[prefix]

    for pname in names:
        parts = pname.split(".")
        member = next((".".join(parts[:i]) for i in range(1, len(parts))
                       if inside(".".join(parts[:i]))), pname)
        if member not in out:
            out.append(member)
    return tuple(out)


def _only_norms(net: nn.Module, names: list[str]) -> bool:
    """Every parameter belongs to a normalisation layer (timm's final `norm` / `head.norm`)."""
    return all("." in n and "norm" in type(net.get_submodule(n.rsplit(".", 1)[0])).__name__.lower()
               for n in names)


def cam_layer(net: nn.Module, groups: tuple[tuple[str, ...], ...]) -> str:
    info = getattr(net, "feature_info", None) or []
    module = info[-1]["module"] if info else next(
        (m for m in reversed(groups[-1]) if _is_module(net, m)), "")
    if getattr(net, "global_pool", None) == "token" and _is_module(net, f"{module}.norm1"):
        return f"{module}.norm1"
    return module


def _is_module(net: nn.Module, name: str) -> bool:
    try:
        net.get_submodule(name)
        return True
    except AttributeError:
        return False

