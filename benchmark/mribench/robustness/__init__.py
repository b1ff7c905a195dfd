"""Robustness to MRI artefacts: graded, deterministic test-time corruptions (TorchIO).

severities.py is the table (pure Python: the suite schema imports it), corrupt.py applies one
artefact at one severity to one decoded image, cache.py keeps the corrupted images beside the
decoded pixels, evaluate.py scores a trained cell on them. Nothing is imported eagerly.
"""
