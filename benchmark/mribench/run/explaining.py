"""Explaining a trained cell: the explanation methods on a seeded pick of test images per class,
their sanity metrics, figures and per-image maps (so a report can set the same files side by
side across models)."""
from __future__ import annotations

import numpy as np

from mribench import data, tracking
from mribench.console import console
from mribench.explain import explainer as explain
from mribench.matrix import Cell
from mribench.run import layout, protocols


def explain_cell(cell: Cell, built, prepared, mean, std, device) -> None:
    from mribench.data.masks import load_mask

    cfg, test = protocols.explain_config(cell, built), prepared.splits["test"]
    if not cfg.methods:  # knn asked only for gradient methods
        return
    files = [prepared.relative(s.path) for s in test]
    picks = explain.select_images(files, [s.label for s in test], len(prepared.classes),
                                  cfg.per_class, cfg.seed)
    chosen = [test[i] for i in picks]
    raw = [data.load_image(s.path, cell.preprocess) for s in chosen]
    masks = np.stack([load_mask(s.path, cell.preprocess) for s in chosen])
    batch = next(iter(data.make_loader(chosen, cell.preprocess, None, mean=mean, std=std,
                                       batch_size=len(chosen), shuffle=False, seed=cell.seed)))
    layers = {m: built.explain_layer(cfg.layercam_layer if m == "layercam" else
                                     cfg.gradcam_layer)[1] for m in cfg.methods if m != "lime"}
    # cascading randomisation re-initialises the head, then block groups from the top down
    stages = [["head"], *[[f"backbone.net.{n}" for n in group]
                          for group in reversed(built.group_names)]]
    labels = [s.label for s in chosen]
    result = explain.explain(built.model, layers, raw, batch[0], labels, prepared.classes, cfg,
                             device, masks=masks, stages=stages,
                             channels_last=built.spec.layout == "NHWC")
    tracking.log_metrics(result.metrics)
    for method, curve in result.curves.items():
        if len(curve) > 1:  # cascading: rho after re-initialising the top 1, 2, ... stages
            for step, rho in enumerate(curve, 1):
                tracking.log_metrics({f"{method}_randomisation_spearman_cascade": rho}, step)
    tracking.set_tags(result.tags)
    for flag in result.flags:
        console.print(f"explanation warning ({cell.title}): {flag}", style="yellow",
                      markup=False, highlight=False)
    for method, fig in result.figures.items():
        tracking.log_figure(fig, layout.explanation_figure(method))
    # per-image maps, so a report can set the same files side by side across models
    arrays = {"files": np.array([files[i] for i in picks]), "labels": np.array(labels),
              "preds": result.preds, "classes": np.array(prepared.classes),
              "images": np.stack([np.asarray(r) for r in raw]), "masks": result.masks}
    arrays |= {m: maps.astype(np.float32) for m, maps in result.maps.items()}
    arrays |= {f"randomised_{m}": maps.astype(np.float32)
               for m, maps in result.randomised.items()}
    tracking.log_arrays(arrays, layout.EXPLANATION_MAPS)
