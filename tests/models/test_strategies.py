"""Transfer-learning strategies on real tiny models and a few real MRI images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mribench.config.schema import ModelConfig, StrategyConfig
from mribench.data.registry import SAMPLE_DIR
from mribench.models import registry, strategies
from mribench.models.archs import create_network
from mribench.models.build import build
from real_data import DATA_DIR, have

BINARY = "brain-mri-binary-253"
SIZE = 48


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("w") / "test_resnet.pth"
    torch.save(create_network(registry.get("test_resnet")).state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def batch():
    """Four real MRI scans, two with a tumour and two without: from the 253-image set when it
    is here, else from the sample of the 7023 set shipped with the package."""
    if have(BINARY):
        tumour, healthy = DATA_DIR / BINARY / "yes", DATA_DIR / BINARY / "no"
    else:
        tumour, healthy = SAMPLE_DIR / "Training" / "glioma", SAMPLE_DIR / "Training" / "notumor"
    files = sorted(tumour.glob("*"))[:2] + sorted(healthy.glob("*"))[:2]
    imgs = [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE))) for f in files]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.5) / 0.5
    return x, torch.tensor([1, 1, 0, 0])


def _build(weight_file, **strategy):
    return build(ModelConfig(name="test_resnet", weights=weight_file),
                 StrategyConfig(**strategy), num_classes=2, image_size=SIZE)


def _step(built, batch, lr=0.1):
    opt = torch.optim.SGD(built.param_groups(lr), lr=lr)
    built.train()
    x, y = batch
    F.cross_entropy(built.model(x), y).backward()
    opt.step()
    opt.zero_grad()


def _numel(modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("name,n_groups,expected", [
    ("scratch", 5, 5), ("full", 5, 5), ("frozen", 5, 0), ("partial", 5, 2), ("gradual", 5, 0)])
def test_trainable_group_count(name, n_groups, expected):
    assert strategies.trainable_groups(StrategyConfig(name=name, blocks=2), n_groups) == expected


def test_trainable_parameters_per_strategy(weight_file):
    head = None
    for name in ("scratch", "full", "frozen", "partial"):
        built = _build(weight_file if name != "scratch" else None, name=name, blocks=2)
        head = _numel([built.head])
        info = built.info
        assert info["params_total"] == info["params_trainable"] + info["params_non_trainable"]
        expected = {"scratch": info["params_total"], "full": info["params_total"],
                    "frozen": head,
                    "partial": head + _numel(built.groups[-2] + built.groups[-1])}[name]
        assert info["params_trainable"] == expected, name
        assert built.frozen_backbone == (name == "frozen")
        assert built.info["weight_source"] == ("scratch" if name == "scratch" else "file")


def test_frozen_backbone_weights_and_bn_stats_survive_a_training_step(weight_file, batch):
    built = _build(weight_file, name="frozen")
    before = {k: v.clone() for k, v in built.backbone.state_dict().items()}
    head_before = [p.clone() for p in built.head.parameters()]
    _step(built, batch)
    after = built.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen backbone changed"
    assert any(not torch.equal(a, b) for a, b in zip(head_before, built.head.parameters()))
    assert not any(m.training for m in built.backbone.modules())
    built.model.train()  # a caller that trains the nn.Module directly gets the same rule
    assert not any(m.training for m in built.backbone.modules()) and built.head.training
    assert [g["name"] for g in built.param_groups(0.1)] == ["head"]


def test_frozen_features_are_reusable(weight_file, batch):
    """In train mode a frozen backbone gives the eval-mode features: precomputing them is exact."""
    built = _build(weight_file, name="frozen")
    x, _ = batch
    built.train()
    with torch.no_grad():
        first, second = built.backbone(x), built.backbone(x)
    built.eval()
    with torch.no_grad():
        assert torch.equal(first, second) and torch.equal(first, built.backbone(x))


def test_partial_trains_only_the_last_groups_and_keeps_other_bn_stats(weight_file, batch):
    built = _build(weight_file, name="partial", blocks=1)
    frozen_bn = built.backbone.net.layer3[0].bn1
    trained_bn = built.backbone.net.layer4[0].bn1
    frozen_mean, trained_mean = frozen_bn.running_mean.clone(), trained_bn.running_mean.clone()
    layer3 = [p.clone() for p in built.backbone.net.layer3.parameters()]
    layer4 = [p.clone() for p in built.backbone.net.layer4.parameters()]
    _step(built, batch)
    assert not frozen_bn.training and trained_bn.training
    assert torch.equal(frozen_bn.running_mean, frozen_mean)
    assert not torch.equal(trained_bn.running_mean, trained_mean)
    assert all(torch.equal(a, b) for a, b in zip(layer3, built.backbone.net.layer3.parameters()))
    # (timm zero-initialises the last BN of each residual block, so not every tensor moves yet)
    assert any(not torch.equal(a, b) for a, b in zip(layer4, built.backbone.net.layer4.parameters()))
    assert built.trainable_group_names() == [("layer4",)]


def test_gradual_unfreezes_one_group_every_n_epochs(weight_file):
    built = _build(weight_file, name="gradual", every=2)
    assert not built.frozen_backbone and built.n_trainable_groups == 0
    changes = [built.on_epoch_start(epoch) for epoch in range(12)]
    assert changes == [False, False, True, False, True, False, True, False, True, False, True,
                       False]
    assert built.n_trainable_groups == len(built.groups) == 5
    assert all(p.requires_grad for p in built.model.parameters())


def test_gradual_trainable_set_follows_the_schedule(weight_file):
    built = _build(weight_file, name="gradual", every=1)
    head = _numel([built.head])
    assert built.on_epoch_start(1)
    groups = built.param_groups(1e-3, backbone_lr=1e-5)
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 1e-5), ("head", 1e-3)]
    assert sum(p.numel() for p in groups[0]["params"]) == _numel(built.groups[-1])
    assert sum(p.numel() for p in groups[1]["params"]) == head
    assert built.on_epoch_start(1) is False  # same epoch again: nothing changes


def test_full_strategy_uses_one_lr_unless_backbone_lr_given(weight_file):
    built = _build(weight_file, name="full")
    assert [g["lr"] for g in built.param_groups(0.01)] == [0.01, 0.01]
    assert [g["lr"] for g in built.param_groups(0.01, 0.001)] == [0.001, 0.01]
    assert built.on_epoch_start(3) is False
