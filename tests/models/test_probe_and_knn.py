"""The evaluation protocols' models: linear_probe's one Linear layer and knn's neighbour vote."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from mribench.config.schema import HeadConfig, ModelConfig, StrategyConfig
from mribench.models.build import build
from mribench.models.neighbours import FLOOR, KnnHead
from mribench.run.protocols import k_phrase


def test_knn_probabilities_are_sklearns_cosine_vote_fractions():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(60, 8)), rng.normal(size=(25, 8))
    labels = rng.integers(0, 3, 60)
    head = KnnHead(num_classes=3, k=7).fit(torch.from_numpy(train), torch.from_numpy(labels))
    ours = head.probabilities(torch.from_numpy(test)).numpy()
    sk = KNeighborsClassifier(n_neighbors=7, metric="cosine").fit(train, labels)
    np.testing.assert_allclose(ours, sk.predict_proba(test), atol=1e-6)
    # logits are log vote fractions (floored), so softmax gives the probabilities back
    back = torch.softmax(head(torch.from_numpy(test)).double(), 1).numpy()
    np.testing.assert_allclose(back, np.clip(ours, FLOOR, None) / np.clip(ours, FLOOR, None)
                               .sum(1, keepdims=True), atol=1e-9)


def test_knn_ties_go_to_the_first_training_image_and_k_is_capped():
    same = torch.tensor([[1.0, 0.0]] * 4)  # four identical training features, labels 2, 0, 1, 1
    head = KnnHead(num_classes=3, k=1).fit(same, torch.tensor([2, 0, 1, 1]))
    for _ in range(3):  # the same answer every time: the first of the tied images
        assert head.probabilities(torch.tensor([[2.0, 0.0]])).tolist() == [[0.0, 0.0, 1.0]]
    capped = KnnHead(num_classes=3, k=50).fit(same, torch.tensor([2, 0, 1, 1]))
    assert capped.k_used == 4
    assert capped.probabilities(torch.tensor([[1.0, 0.0]])).tolist() == [[0.25, 0.5, 0.25]]
    # the console line says so (a small train_per_class caps the suite's k)
    assert k_phrase(capped.k, capped.k_used) == "k=50 capped to 4 (training images)"
    assert k_phrase(head.k, head.k_used) == "k=1"


def test_a_fitted_knn_head_loads_into_a_fresh_one_and_votes_the_same():
    """A logged knn model is rebuilt empty and then loaded: the index takes the saved shapes."""
    rng = np.random.default_rng(1)
    train, test = torch.from_numpy(rng.normal(size=(30, 6))), torch.from_numpy(rng.normal(size=(9, 6)))
    fitted = KnnHead(num_classes=4, k=5).fit(train, torch.from_numpy(rng.integers(0, 4, 30)))
    fresh = KnnHead(num_classes=4, k=5)
    fresh.load_state_dict(fitted.state_dict())
    assert fresh.bank.shape == (30, 6) and fresh.k_used == 5
    assert torch.equal(fresh.probabilities(test), fitted.probabilities(test))


def test_knn_head_refuses_to_vote_before_it_has_training_features():
    with pytest.raises(RuntimeError, match="before fit"):
        KnnHead(3, 5)(torch.ones(2, 4))


def test_linear_probe_is_one_linear_layer_whatever_head_the_model_declares():
    model = ModelConfig(name="test_resnet", head=HeadConfig(type="gap_mlp", hidden=32))
    probe = build(model, StrategyConfig(name="linear_probe"), num_classes=4, image_size=32,
                  load_weights=False)
    assert [type(m).__name__ for m in probe.head] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert probe.frozen_backbone and probe.info["model_head"] == "linear"
    trainable = [p for p in probe.model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == 96 * 4 + 4  # test_resnet's 96 features -> 4
    frozen = build(model, StrategyConfig(name="frozen"), num_classes=4, image_size=32,
                   load_weights=False)
    assert [type(m).__name__ for m in frozen.head][-3:] == ["Linear", "ReLU", "Linear"]


def test_k_belongs_to_knn_only_and_defaults_to_20():
    assert StrategyConfig(name="knn").k == 20
    assert "k" not in StrategyConfig(name="full").model_dump()  # run_keys of old cells kept
    with pytest.raises(ValueError, match="k .* parameter of strategy knn, not of 'full'"):
        StrategyConfig(name="full", k=5)
