"""bitfit, norm, lora and lp_ft train exactly the parameters they claim, on a tiny CNN and a
tiny ViT: counted from the architecture independently of models/adapters.py, and checked by a
real optimizer step on real MRI images (what moved is what was meant to)."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mribench.config.schema import ModelConfig, StrategyConfig
from mribench.data.registry import SAMPLE_DIR
from mribench.models import strategies
from mribench.models.build import build

MODELS = {"test_resnet": 48, "timm:test_vit": 32}  # name -> image side (a patch multiple)


def images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    files = (sorted((SAMPLE_DIR / "Training" / "glioma").glob("*"))[:2]
             + sorted((SAMPLE_DIR / "Training" / "notumor").glob("*"))[:2])
    x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size))) for f in files])
    return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25, \
        torch.tensor([1, 1, 0, 0])


def _built(model: str, **strategy):
    torch.manual_seed(0)
    return build(ModelConfig(name=model), StrategyConfig(**strategy), num_classes=2,
                 image_size=MODELS[model], load_weights=False)


def _raw(model: str) -> nn.Module:
    """The architecture straight from timm, for counting what each method should train."""
    return timm.create_model(model.removeprefix("timm:"), num_classes=0,
                             **({"img_size": MODELS[model]} if "vit" in model else {}))


def _head(built) -> int:
    return sum(p.numel() for p in built.head.parameters())


def expected(model: str, name: str, rank: int = 8) -> int:
    net = _raw(model)
    if name == "bitfit":
        return sum(p.numel() for n, p in net.named_parameters() if n.endswith(".bias"))
    if name == "norm":
        return sum(p.numel() for m in net.modules()
                   if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)) for p in m.parameters(False))
    if name == "lora":  # A: in -> r, B: r -> out; a conv's A carries the kernel
        if "vit" in model:
            return sum(rank * (m.in_features + m.out_features) for n, m in net.named_modules()
                       if type(m) is nn.Linear and n.split(".")[-1] in ("qkv", "proj"))
        return sum(rank * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                   + rank * m.out_channels for m in net.modules()
                   if type(m) is nn.Conv2d and m.groups == 1)
    return sum(p.numel() for p in net.parameters())  # lp_ft / full: the whole backbone


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("name", ["bitfit", "norm", "lora", "lp_ft"])
def test_each_method_trains_exactly_what_it_claims(model, name, one_thread):
    built = _built(model, name=name)
    want = expected(model, name) + _head(built)
    assert built.info["params_trainable"] == want
    assert 0 < want - _head(built) < built.info["params_total"] - _head(built) or name == "lp_ft"
    before = {n: p.detach().clone() for n, p in built.model.named_parameters()}
    opt = torch.optim.SGD(built.param_groups(0.5), lr=0.5)
    x, y = images(MODELS[model])
    built.train()
    if name == "lora":  # B starts at zero (no change at first): give it a step to move A too
        for _ in range(2):
            F.cross_entropy(built.model(x), y).backward()
            opt.step()
            opt.zero_grad()
    else:
        F.cross_entropy(built.model(x), y).backward()
        opt.step()
    moved = {n for n, p in built.model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert moved <= trainable
    assert sum(p.numel() for n, p in built.model.named_parameters() if n in trainable) == want
    # the head and the backbone's share both learn (a few units of a randomly initialised
    # tiny net get no gradient through a dead ReLU, so not every tensor moves)
    assert any(n.startswith("head.") for n in moved)
    assert any(n.startswith("backbone.") for n in moved)


def test_lora_merges_into_the_plain_architecture_with_the_same_outputs(one_thread):
    built = _built("timm:test_vit", name="lora", rank=4, alpha=8)
    assert built.info["lora_targets"] == 2 * len(_raw("timm:test_vit").blocks)
    for n, p in built.model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)  # as if trained
    x, _ = images(32)
    built.eval()
    with torch.no_grad():
        adapted = built.model(x)
    strategies.deploy(built)
    assert not [n for n, _ in built.model.named_parameters() if "lora" in n]
    plain = _built("timm:test_vit", name="full")
    assert set(built.model.state_dict()) == set(plain.model.state_dict())
    with torch.no_grad():
        assert torch.allclose(built.model(x), adapted, atol=1e-5)


def test_lora_targets_are_configurable_and_a_wrong_one_is_named():
    built = _built("test_resnet", name="lora", targets=["conv2"], rank=2)
    assert built.info["lora_targets"] > 0
    assert all(n.endswith("conv2") for n in built.info["lora_target_names"].split(","))
    with pytest.raises(ValueError, match="targets \\['nope'\\] match no"):
        _built("test_resnet", name="lora", targets=["nope"])


@pytest.mark.parametrize("name", ["bitfit", "norm", "lora"])
def test_layer_wise_rates_hand_the_optimizer_every_trained_parameter(name):
    """With layer_decay the optimizer groups follow the block groups; lora's adapters on a
    layer that is itself a group member (test_efficientnet's conv_head) must not fall out."""
    torch.manual_seed(0)
    built = build(ModelConfig(name="test_efficientnet"), StrategyConfig(name=name),
                  num_classes=2, image_size=48, load_weights=False)
    groups = built.param_groups(1e-3, 3e-4, layer_decay=0.7)
    handed = sum(p.numel() for g in groups for p in g["params"])
    assert handed == built.info["params_trainable"]


def _bn_statistics(built) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in built.backbone.named_buffers()
            if n.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("name", ["full", "norm", "lora", "lp_ft"])
def test_batchnorm_pretrained_keeps_the_pretrained_statistics_and_still_trains(name, one_thread):
    """`batchnorm: pretrained`: a training step leaves every running mean and variance where the
    weights put them (they move by default), while what the strategy trains still moves: for
    norm tuning, the batch-norm layers' own scales and shifts."""
    x, y = images(48)
    moved = {}
    for mode in ("adapt", "pretrained"):
        built = _built("test_resnet", name=name, batchnorm=mode)
        stats = _bn_statistics(built)
        before = {n: p.detach().clone() for n, p in built.backbone.named_parameters()}
        opt = torch.optim.SGD(built.param_groups(0.5), lr=0.5)
        built.train()
        for _ in range(2):  # lora's B starts at zero: a second step moves the backbone
            F.cross_entropy(built.model(x), y).backward()
            opt.step()
            opt.zero_grad()
        after = _bn_statistics(built)
        moved[mode] = [n for n in stats if not torch.equal(stats[n], after[n])]
        assert any(not torch.equal(p, before[n])
                   for n, p in built.backbone.named_parameters() if n in before)
        if name == "norm":  # the affine parameters of the fixed-statistics layers still learn
            assert any(not torch.equal(p, before[n]) for n, p in built.backbone.named_parameters()
                       if n.endswith("bn1.weight"))
    assert len(moved["adapt"]) == len(_bn_statistics(_built("test_resnet", name="full")))
    assert moved["pretrained"] == []


def test_batchnorm_is_refused_where_nothing_in_the_backbone_trains_and_adapt_is_the_default():
    for name in ("frozen", "linear_probe", "knn", "scratch"):
        with pytest.raises(ValueError, match=f"batchnorm is a parameter of .* not of '{name}'"):
            StrategyConfig(name=name, batchnorm="pretrained")
    # written or not, the default is one configuration (so one run_key); pretrained is another
    dump = StrategyConfig(name="bitfit").model_dump()
    assert StrategyConfig(name="bitfit", batchnorm="adapt").model_dump() == dump
    assert StrategyConfig(name="bitfit", batchnorm="pretrained").model_dump() == {
        **dump, "batchnorm": "pretrained"}
