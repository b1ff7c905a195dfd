"""Frozen-feature reuse: pooled features give the head exactly what unpooled maps do, and every
image goes through the backbone once, whichever splits ask for it."""
from __future__ import annotations

import torch

from mribench import data
from mribench.config.schema import (
    DatasetConfig,
    ModelConfig,
    PreprocessConfig,
    SplitConfig,
    StrategyConfig,
    TrainingConfig,
)
from mribench.models.build import build
from mribench.train.engine import Trainee, evaluate, fit
from mribench.train.features import FeatureStore, feature_stage

PRE = PreprocessConfig(image_size=32)


def _prepared(data_dir, tmp_path):
    return data.prepare(DatasetConfig(name="brain-tumor-mri-7023", subset_per_class=5),
                        SplitConfig(val_fraction=0.25), PRE, seed=0, fold=None,
                        data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))


def _train_head(built, prepared, pooled: bool, head_state: dict):
    built.head.load_state_dict(head_state)
    extractor, net = feature_stage(built.backbone, built.head, pooled)
    spec = built.spec

    def images(samples):
        return data.make_loader(samples, PRE, None, mean=spec.mean, std=spec.std, batch_size=8,
                                shuffle=False, seed=0)
    store = FeatureStore(extractor, images, "cpu", batch_size=8, seed=0)
    cfg = TrainingConfig(epochs=4, batch_size=8, lr=0.01)
    torch.manual_seed(0)  # dropout and any other randomness of the head start equal
    result = fit(Trainee(net, net.train, lambda: built.param_groups(cfg.lr), built.on_epoch_start),
                 store.loader(prepared.splits["train"], True),
                 store.loader(prepared.splits["val"], False), cfg, "cpu")
    test = evaluate(net, store.loader(prepared.splits["test"], False),
                    torch.nn.CrossEntropyLoss(), "cpu")
    return result, test, store


def test_pooled_features_train_the_same_head_as_feature_maps(data_dir, tmp_path, one_thread):
    prepared = _prepared(data_dir, tmp_path)
    torch.manual_seed(1)
    built = build(ModelConfig(name="test_efficientnet"), StrategyConfig(name="frozen"),
                  num_classes=4, image_size=32, load_weights=False)
    start = {k: v.clone() for k, v in built.head.state_dict().items()}
    pooled, pooled_test, store_p = _train_head(built, prepared, True, start)
    maps, maps_test, store_m = _train_head(built, prepared, False, start)
    assert len(store_p.feature_shape) == 1 and len(store_m.feature_shape) == 3  # [C] vs [C,H,W]
    assert [r["val_acc"] for r in pooled.history] == [r["val_acc"] for r in maps.history]
    for a, b in zip(pooled.history, maps.history):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5
    assert pooled_test["acc"] == maps_test["acc"]
    assert torch.allclose(torch.from_numpy(pooled_test["probs"]),
                          torch.from_numpy(maps_test["probs"]), atol=1e-5)


def test_each_image_goes_through_the_backbone_once(data_dir, tmp_path, one_thread):
    prepared = _prepared(data_dir, tmp_path)
    built = build(ModelConfig(name="test_efficientnet"), StrategyConfig(name="frozen"),
                  num_classes=4, image_size=32, load_weights=False)
    extractor, _ = feature_stage(built.backbone, built.head)
    store = FeatureStore(extractor, lambda s: data.make_loader(
        s, PRE, None, mean=0.5, std=0.5, batch_size=8, shuffle=False, seed=0), "cpu", 8, 0)
    splits = prepared.splits
    first = next(iter(store.loader(splits["test"], False)))[0]
    store.loader(splits["train"] + splits["val"], True)
    again = next(iter(store.loader(splits["test"][:3] + splits["train"][:2], False)))[0]
    assert store.images_extracted == sum(len(v) for v in splits.values())
    assert torch.equal(first[:3], again[:3])
