"""Training loop behaviour: best-validation checkpoint restored, early stopping, gradual hooks."""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mribench.config.schema import TrainingConfig
from mribench.train.engine import Trainee, evaluate, fit, train_one_epoch


def loaders(flip_val=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()  # a linearly separable task
    val_y = 1 - y[48:] if flip_val else y[48:]  # flipped: every epoch of training hurts val
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16)
    val = DataLoader(TensorDataset(x[48:], val_y), batch_size=16)
    return train, val


def run_fit(net, cfg, on_epoch_start=lambda e: False, flip_val=False):
    snapshots = []
    result = fit(Trainee(net, net.train, lambda: [{"params": list(net.parameters()), "name": "head"}],
                         on_epoch_start), *loaders(flip_val), cfg, "cpu",
                 on_epoch=lambda row: snapshots.append(copy.deepcopy(net.state_dict())))
    return result, snapshots


def test_best_validation_checkpoint_is_restored():
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    result, snapshots = run_fit(net, TrainingConfig(epochs=6, lr=0.5, optimizer="sgd"),
                                flip_val=True)
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == 1 and losses == sorted(losses)  # validation only gets worse
    restored = net.state_dict()
    assert not torch.equal(restored["weight"], snapshots[-1]["weight"])
    assert all(torch.equal(restored[k], snapshots[result.best_epoch - 1][k]) for k in restored)


def test_early_stopping_after_patience_epochs_without_improvement():
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    result, _ = run_fit(net, TrainingConfig(epochs=50, lr=0.5, optimizer="sgd", patience=2),
                        flip_val=True)
    assert result.stopped_early and result.best_epoch == 1
    assert len(result.history) == 3  # best epoch, then two without improvement


def test_strategy_hook_runs_before_each_epoch_counting_from_zero():
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    calls = []
    result, _ = run_fit(net, TrainingConfig(epochs=3),
                        on_epoch_start=lambda e: calls.append(e) or e == 1)
    assert calls == [0, 1, 2]  # 0-based, once before each epoch
    assert len(result.history) == 3 and all(r["lr"] == 1e-3 for r in result.history)


def test_evaluate_returns_probabilities_and_single_image_batches_are_skipped_in_training():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    x, y = torch.randn(17, 4), torch.randint(0, 2, (17,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # last batch holds one image
    net.train()
    out = train_one_epoch(net, loader, torch.optim.SGD(net.parameters(), lr=0.1),
                          nn.CrossEntropyLoss(), "cpu")
    assert out["loss"] > 0  # no batch-norm error on the one-image batch
    ev = evaluate(net, loader, nn.CrossEntropyLoss(), "cpu")
    assert ev["probs"].shape == (17, 2) and abs(ev["probs"].sum(1) - 1).max() < 1e-12
    assert ev["acc"] == (ev["probs"].argmax(1) == y.numpy()).mean()


def test_gradual_unfreezing_keeps_the_learning_rate_schedule():
    torch.manual_seed(0)
    backbone, head = nn.Linear(4, 4), nn.Linear(4, 2)
    net = nn.Sequential(backbone, head)
    backbone.requires_grad_(False)

    def groups():
        out = [{"name": "backbone", "params": list(backbone.parameters()), "lr": 1e-4}]
        return [g for g in out if all(p.requires_grad for p in g["params"])] + [
            {"name": "head", "params": list(head.parameters())}]

    def unfreeze_at_3(epoch):
        if epoch == 3:
            backbone.requires_grad_(True)
            return True
        return False

    rows = []
    fit(Trainee(net, net.train, groups, unfreeze_at_3), *loaders(), TrainingConfig(epochs=6,
        scheduler="cosine", lr=1e-3), "cpu", on_epoch=rows.append)
    head_lr = [r["lr"] for r in rows]
    assert head_lr == sorted(head_lr, reverse=True) and head_lr[-1] < head_lr[0] / 2
    backbone_lr = [r["lr_backbone"] for r in rows]
    assert backbone_lr[:3] == [0.0, 0.0, 0.0]
    # joins where the schedule is, at the same fraction of its own base rate as the head
    assert abs(backbone_lr[3] / 1e-4 - head_lr[3] / 1e-3) < 1e-9


def _spiking(n_batches: int, spikes: set[int], scale: float) -> tuple[nn.Module, DataLoader]:
    """A linear classifier whose logits are multiplied by `scale` on the given (1-based) batches:
    a loss of hundreds there, ordinary cross-entropy elsewhere."""
    torch.manual_seed(0)
    x, y = torch.randn(8 * n_batches, 4), torch.randint(0, 2, (8 * n_batches,))
    net, calls = nn.Linear(4, 2), []

    def spike(module, inputs, out):
        calls.append(1)
        return out * scale if len(calls) in spikes else out

    net.register_forward_hook(spike)
    return net, DataLoader(TensorDataset(x, y), batch_size=8)


def test_a_loss_spike_that_recovers_is_not_divergence():
    # Study B's VGG16 trained whole with Adam 1e-3: loss 760 at batch 2, then it learns
    net, loader = _spiking(40, {2, 3}, 500.0)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    out = train_one_epoch(net, loader, opt, nn.CrossEntropyLoss(), "cpu", max_loss=100.0)
    assert 5 < out["loss"] < 100  # the spikes (over 100) are in the mean, and it finished


def test_a_loss_that_stays_above_the_bound_diverges_and_nan_at_once():
    from mribench.train.engine import Diverged

    net, loader = _spiking(40, set(range(5, 41)), 3000.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    try:
        train_one_epoch(net, loader, opt, nn.CrossEntropyLoss(), "cpu", max_loss=100.0,
                        max_loss_batches=10)
        raise AssertionError("a loss above the bound for 36 batches must diverge")
    except Diverged as err:
        assert err.batch == 14 and "for 10 consecutive batches" in str(err)
    net, loader = _spiking(40, {3}, float("nan"))
    try:
        train_one_epoch(net, loader, opt, nn.CrossEntropyLoss(), "cpu", max_loss=100.0)
        raise AssertionError("a non-finite loss must diverge at once")
    except Diverged as err:
        assert err.batch == 3 and "non-finite" in str(err)
