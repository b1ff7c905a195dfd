"""Training: `fit` (engine.py) driving one training pass (epoch.py), evaluation (evaluation.py),
the optimizer and schedule (optim.py) and checkpoints (checkpoints.py); precision and device
placement (precision.py), frozen-backbone feature reuse (features.py) and the speed benchmark
(perf.py)."""
