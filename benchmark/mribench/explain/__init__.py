"""Explanations: the per-cell driver (explainer.py), the CAM family (cams.py), LIME inside the
brain (lime_maps.py), their inputs (inputs.py), sanity checks (checks.py) and deletion/insertion
faithfulness (faithfulness.py). Only this package imports pytorch-grad-cam and lime."""
