"""Layer-wise learning-rate decay (training.layer_decay) over a model's block groups."""
from __future__ import annotations

import pytest

from mribench.config.schema import ModelConfig, StrategyConfig, TrainingConfig
from mribench.models.build import build
from mribench.train.engine import make_optimizer


@pytest.mark.parametrize("name", ["test_resnet", "timm:test_vit"])
def test_each_block_group_trains_at_decay_times_the_rate_above_it(name):
    built = build(ModelConfig(name=name), StrategyConfig(name="full"), 4, image_size=32,
                  load_weights=False)
    groups = built.param_groups(1e-3, 1e-4, layer_decay=0.5)
    head, backbone = groups[-1], groups[:-1]
    assert head["name"] == "head" and head["lr"] == 1e-3
    assert len(backbone) == len(built.groups) > 2
    # top group at backbone_lr, then halving towards the input
    assert [g["lr"] for g in backbone] == pytest.approx([1e-4 * 0.5 ** d for d in range(len(backbone))])
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # every parameter in one group only, the whole model covered
    assert set(ids) == {id(p) for p in built.model.parameters() if p.requires_grad}
    make_optimizer(groups, TrainingConfig())  # torch accepts the groups as they are


def test_partial_decays_only_over_the_groups_that_train():
    built = build(ModelConfig(name="test_resnet"), StrategyConfig(name="partial", blocks=2), 4,
                  image_size=32, load_weights=False)
    groups = built.param_groups(1e-3, layer_decay=0.1)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4, 1e-3])  # top, next, head
