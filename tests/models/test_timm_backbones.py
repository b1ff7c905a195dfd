"""`timm:<name>` entries: metadata derived from timm, weights from a pre-filled Hugging Face
cache with the hub offline, fixed-size transformers at another image size."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from timm.data import resolve_data_config
from timm.layers import resample_abs_pos_embed

from hf_cache import fill_hf_cache
from mribench.config.schema import ModelConfig, StrategyConfig
from mribench.errors import UnknownName
from mribench.models import registry
from mribench.models.archs import ImageSizeError
from mribench.models.build import build


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An offline hub whose cache holds random 'ImageNet' weights for test_vit / test_convnext."""
    import huggingface_hub.constants as hf

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))  # read once, at import, by the library
    monkeypatch.delenv("BENCHMARK_WEIGHTS_DIR", raising=False)
    files = {}
    torch.manual_seed(7)
    for name in ("test_vit", "test_convnext"):
        net = timm.create_model(name)
        files[name] = fill_hf_cache(cache, net.pretrained_cfg["hf_hub_id"], net.state_dict())
    return files


@pytest.mark.parametrize("name", ["test_vit", "test_convnext"])
def test_metadata_is_derived_from_timm(name):
    spec = registry.get(f"timm:{name}")
    net = timm.create_model(name)
    data = resolve_data_config(model=net)
    assert (spec.mean, spec.std, spec.input_size) == (data["mean"], data["std"],
                                                      data["input_size"][-1])
    assert spec.hub == f"{name}.r160_in1k" and spec.pooled_features
    assert spec.gradcam.startswith(net.feature_info[-1]["module"])
    groups = timm.models.group_parameters(net, net.group_matcher(coarse=True))
    # timm's stem + stages/blocks (the final norm joins the last group)
    assert len(spec.groups) == len(groups) - 1


def test_unknown_timm_name_is_a_user_error_with_close_names():
    with pytest.raises(UnknownName, match="timm has no architecture 'vit_smal_patch16_224'.*"
                                          "vit_small_patch16_224"):
        registry.get("timm:vit_smal_patch16_224")


def test_weights_come_from_the_hf_cache_offline_and_equal_the_file(hf_cache):
    from safetensors.torch import load_file

    built = build(ModelConfig(name="timm:test_convnext"), StrategyConfig(name="partial"), 4,
                  image_size=64)
    assert built.info["weight_source"] == "hub:test_convnext.r160_in1k"
    assert Path(built.info["weight_file"]).samefile(hf_cache["test_convnext"])
    file = load_file(str(hf_cache["test_convnext"]))
    state = built.backbone.net.state_dict()
    assert state and all(torch.equal(v, file[k]) for k, v in state.items())
    assert built.info["input_size_handling"].startswith("64 px, no change needed")
    assert built.trainable_group_names() == [("stages.3", "head")]


def test_fixed_size_vit_at_another_size_resamples_position_embeddings(hf_cache):
    from safetensors.torch import load_file

    built = build(ModelConfig(name="timm:test_vit"), StrategyConfig(name="full"), 4,
                  image_size=64)
    handling = built.info["input_size_handling"]
    assert "created at img_size=64" in handling and "native 160 px" in handling
    assert "pos_embed 1x101x64->1x17x64 resampled" in handling
    file, state = load_file(str(hf_cache["test_vit"])), built.backbone.net.state_dict()
    assert all(torch.equal(v, file[k]) for k, v in state.items() if k != "pos_embed")
    want = resample_abs_pos_embed(file["pos_embed"], (4, 4), num_prefix_tokens=1)
    assert torch.allclose(state["pos_embed"], want)
    assert built.model(torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_offline_without_the_file_in_the_cache_names_the_hub_and_the_cache(hf_cache):
    from mribench.models.weights import WeightsNotFound

    with pytest.raises(WeightsNotFound, match="deit_tiny_patch16_224.fb_in1k.*not in the "
                                              "Hugging Face cache"):
        build(ModelConfig(name="timm:deit_tiny_patch16_224"), StrategyConfig(name="frozen"), 4,
              image_size=32)


def test_a_size_that_is_no_multiple_of_the_patch_is_refused_before_training():
    # timm's test_vit is built with dynamic_img_size: 40 px stopped with an AssertionError at the
    # first batch; a strict ViT silently dropped the last 8 pixels
    with pytest.raises(ImageSizeError, match=r"preprocess\.image_size 40 is not a multiple of "
                                             r"model timm:test_vit's patch size 16: use e\.g\. "
                                             r"32 or 48"):
        build(ModelConfig(name="timm:test_vit"), StrategyConfig(name="scratch"), 2,
              image_size=40)
    built = build(ModelConfig(name="timm:test_vit"), StrategyConfig(name="scratch"), 2,
                  image_size=48)
    assert built.info["input_size_handling"].endswith("3x3 patches of 16 px")
