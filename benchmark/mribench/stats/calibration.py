"""Post-hoc temperature scaling (Guo et al., 2017) and the probability scores it changes.

One scalar T > 0 divides every logit; it is fitted on the validation split by minimising the
negative log-likelihood of softmax(logits / T) over log T (scipy's bounded Brent search, as
scikit-learn's own `CalibratedClassifierCV(method="temperature")` does: that one needs an
estimator and keeps the fitted value in a private object, so the few lines live here and a test
checks they agree). T > 1 softens over-confident probabilities, T < 1 sharpens them; the
predicted class (the argmax) never changes, so accuracy does not either.

Logits are taken as the log of the class probabilities the engine already returns: softmax is
invariant to adding a constant per row, so log softmax(z) / T gives exactly softmax(z / T).
A knn cell's "logits" are its log vote fractions (models/neighbours.py), so the same scaling
acts on them as p_c^(1/T), renormalised: a fitted power of the vote fractions, which also
pulls the 0/1 votes of small k away from certainty.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

# a probability below this is taken as this before its log (float64 softmax underflows to 0
# only for logit gaps over ~745; a knn floor is 1e-7): keeps every logit finite
TINY = 1e-300
LOG_T_BOUNDS = (-5.0, 5.0)  # T in [0.0067, 148]: far beyond any network's miscalibration


def logits_of(probs: np.ndarray) -> np.ndarray:
    """Logits (up to a per-row constant, which softmax ignores) from class probabilities."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), TINY, None))


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) for the class probabilities `probs` = softmax(logits)."""
    return np.exp(log_softmax(logits_of(probs) / float(temperature), axis=1))


def nll(y: np.ndarray, log_probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-log_probs[np.arange(len(y)), np.asarray(y, dtype=int)].mean())


def fit_temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The T minimising the NLL of softmax(log probs / T) on labelled (validation) images.

    A split the model classifies perfectly and confidently pushes T towards 0 (sharper is
    always better there): the search stops at the lower bound, and that value is returned."""
    y = np.asarray(y, dtype=int)
    logits = logits_of(probs)
    if len(y) == 0 or logits.shape != (len(y), logits.shape[1]):
        raise ValueError(f"fit_temperature: need [N, K] probabilities for N labels, got "
                         f"{logits.shape} for {len(y)}")
    result = minimize_scalar(lambda log_t: nll(y, log_softmax(logits / np.exp(log_t), axis=1)),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def brier(y: np.ndarray, probs: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_k (p_k - 1[y = k])^2 (0 is perfect, 2 the
    worst). scikit-learn's brier_score_loss is binary (or halves this sum), so written out."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(y, dtype=int)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())
