"""lp_ft's cell path: a linear probe first, then fine-tuning everything from its head.

Stage 1 (probe) freezes the backbone (eval mode, batch-norm statistics fixed) and trains the
model's head for `strategy.probe_epochs` epochs at training.lr, on the cached features when
nothing augments the images (the frozen strategies' feature-reuse path). Stage 2 unfreezes
everything and fine-tunes from the probe's head for training.epochs epochs at `ft_lr_scale`
times training.lr (and training.backbone_lr), with a fresh optimizer (Kumar et al., ICLR 2022:
a fitted head keeps fine-tuning from distorting the pretrained features).

Both stages log into the cell's run: stage 1's epochs at steps 1..P, stage 2's at P+1..P+E, so
the learning curves read as one; stage 1's summary metrics carry a `probe_` prefix and its own
curves figure. Each stage keeps its own checkpoint (keyed by the cell's run_key with that
stage's training settings), so a killed cell resumes in the stage it was in: a finished stage 1
replays from its last checkpoint, stage 2 picks up mid-stage. Both go once stage 2 is done.
"""
from __future__ import annotations

from dataclasses import replace

from mribench import tracking
from mribench.run import keeping
from mribench.train.engine import FitResult

PROBE = "probe_"


def stage_cells(cell):
    """(probe stage, fine-tuning stage): the cell with each stage's training settings."""
    cfg, s = cell.training, cell.strategy
    probe = cfg.model_copy(update={"epochs": s.probe_epochs})
    tuned = cfg.model_copy(update={
        "lr": cfg.lr * s.ft_lr_scale,
        "backbone_lr": None if cfg.backbone_lr is None else cfg.backbone_lr * s.ft_lr_scale})
    return replace(cell, training=probe), replace(cell, training=tuned)


def fit_lp_ft(train, cell, built, prepared, loader, opts, precision):
    """run/cell.py's fit contract for lp_ft; `train` is the cell's training-loop path."""
    probe_cell, tuned_cell = stage_cells(cell)
    built.frozen_backbone = True  # stage 1: a fixed backbone, so its features may be reused
    built._set_trainable(0)
    first, _, _ = train(probe_cell, built, prepared, loader, opts, precision, stage=PROBE)
    reused = not cell.augment.active and cell.training.feature_reuse  # as the loop decides
    built.frozen_backbone = False
    built._set_trainable(len(built.groups))
    second, net, predict_loader = train(tuned_cell, built, prepared, loader, opts, precision,
                                        first_step=len(first.history))
    tracking.set_tags({"training_path": f"probe ({'feature_reuse' if reused else 'end_to_end'})"
                                        " then end_to_end"})
    if opts.evaluate_test:
        for stage in (probe_cell, tuned_cell):
            keeping.close_checkpoints(stage, opts.cache_dir)
    return combined(first, second), net, predict_loader


def combined(first: FitResult, second: FitResult) -> FitResult:
    """One history over both stages (stage 2's epochs numbered after stage 1's); the best epoch
    is stage 2's (its weights are the ones tested)."""
    offset = len(first.history)
    history = first.history + [{**row, "epoch": row["epoch"] + offset} for row in second.history]
    return FitResult(history, second.best_epoch + offset if second.best_epoch else 0,
                     second.stopped_early, second.last_state, second.optimizer_state_mb)
