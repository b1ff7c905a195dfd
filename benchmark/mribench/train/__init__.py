"""Training: the plain train/evaluate functions (engine.py), precision and device placement
(precision.py), frozen-backbone feature reuse (features.py) and the speed benchmark (perf.py)."""
