"""The knn protocol's cell path: no training, the frozen backbone's pooled features vote.

A knn cell computes each image's pooled features once (the same FeatureStore as the frozen
strategies' feature reuse), fits the neighbour index on the training split and evaluates the
validation split. There is no epoch, so none is logged: no per-epoch metrics, no learning-curve
figure, `epochs_run` 0 and a `training` tag that says so. Test metrics, predictions.csv,
confusion matrices and the explanations are those of every other cell (run/cell.py), except the
gradient methods: a vote count has no gradient, so the Grad-CAM family is skipped, said on the
console and in the `explain_skipped` tag, and LIME (which only needs the classifier's
probabilities) runs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from mribench import tracking
from mribench.console import console
from mribench.models import strategies
from mribench.train.engine import evaluate
from mribench.train.features import FeatureStore, feature_stage

NO_TRAINING = "none: knn votes with the training features (no epochs, no learning curve)"
GRADIENT_METHODS = ("gradcam", "hirescam", "gradcampp", "layercam")


@dataclass
class KnnFit:
    """What run_cell reads from a fit: no history, the validation scores of the index."""
    validation: dict[str, float]
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0


def fit_knn(cell, built, prepared, loader, opts, precision):
    """(KnnFit, the classifier on features, how to feed it any samples): run/cell.py's `_train`
    contract for the knn protocol."""
    t0 = time.perf_counter()
    extractor, net = feature_stage(built.backbone, built.head)
    store = FeatureStore(extractor, lambda samples: loader("test", False, samples),
                         opts.device, cell.training.batch_size, cell.seed)
    knn = net[-1]
    x, y = _features(store, prepared.splits["train"])
    knn.fit(x.to(opts.device), y.to(opts.device))
    seconds = time.perf_counter() - t0
    val = evaluate(net, store.loader(prepared.splits["val"], False), torch.nn.CrossEntropyLoss(),
                   opts.device, precision=precision)
    tracking.set_tags({"training_path": cell.strategy.name, "training": NO_TRAINING,
                       "cached_feature_shape": "x".join(map(str, store.feature_shape))})
    tracking.log_params({"knn_k_used": knn.k_used, "knn_metric": "cosine",
                         "knn_votes": "uniform", "knn_train_images": len(y)})
    # val_loss_best / val_acc_best (run_cell's headline) carry the validation scores
    tracking.log_metrics({"feature_extraction_seconds": seconds, "epochs_run": 0})
    console.print(f"{cell.title}: knn, {k_phrase(knn.k, knn.k_used)}, {len(y)} training images: "
                  "no training (no epochs); validation accuracy "
                  f"{val['acc']:.3f}", markup=False, highlight=False)
    if cell.augment.active:
        console.print(f"{cell.title}: augment is ignored by knn (nothing trains)",
                      style="yellow", markup=False, highlight=False)

    def predict_loader(samples):
        return store.loader(samples, False)
    return KnnFit({"val_loss": val["loss"], "val_acc": val["acc"]}), net, predict_loader


def k_phrase(k: int, used: int) -> str:
    """`k=20`, or `k=20 capped to 12 (training images)` when the training split is smaller
    (a small train_per_class): the cell then votes with every training image, which the
    logged knn_k_used says too."""
    return f"k={k}" if used == k else f"k={k} capped to {used} (training images)"


def _features(store: FeatureStore, samples) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(store.loader(samples, False))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def explain_config(cell, built):
    """The cell's explain block as its strategy can run it: without a gradient (knn) the
    gradient methods are dropped (said once)."""
    cfg = cell.explain
    if strategies.spec_of(built.strategy).has_gradient:
        return cfg
    skipped = [m for m in cfg.methods if m in GRADIENT_METHODS]
    if skipped:
        why = "knn votes have no gradient: Grad-CAM family skipped; LIME needs only probabilities"
        tracking.set_tags({"explain_skipped": f"{', '.join(skipped)} ({why})"})
        console.print(f"{cell.title}: {', '.join(skipped)} skipped ({why})", style="yellow",
                      markup=False, highlight=False)
    return cfg.model_copy(update={"methods": [m for m in cfg.methods if m not in skipped]})
