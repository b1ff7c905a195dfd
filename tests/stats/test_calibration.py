"""Temperature scaling and selective prediction, checked by simulation under a known truth."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from mribench.stats import calibration, selective
from mribench.stats.metrics import expected_calibration_error


def draw(rng, n: int, k: int, temperature: float):
    """Labels drawn from softmax(z) (so softmax(z) is calibrated), and the probabilities of a
    model whose logits are z / temperature (0.4: logits 2.5 times too large, over-confident; the
    temperature that undoes it is 1 / 0.4 = 2.5)."""
    z = rng.normal(0.0, 2.0, size=(n, k))
    truth = softmax(z, axis=1)
    y = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return y, softmax(z / temperature, axis=1), truth


@pytest.mark.parametrize("true_t", [0.4, 2.5])
def test_temperature_scaling_recovers_a_known_miscalibration_and_lowers_ece(true_t):
    rng = np.random.default_rng(7)
    replicates, n = 200, 2000
    fitted, before, after, oracle = [], [], [], []
    for _ in range(replicates):
        y_val, p_val, _ = draw(rng, n, 4, true_t)
        y_test, p_test, truth = draw(rng, n, 4, true_t)
        t = calibration.fit_temperature(y_val, p_val)
        fitted.append(t)
        before.append(expected_calibration_error(y_test, p_test))
        after.append(expected_calibration_error(y_test, calibration.scale(p_test, t)))
        oracle.append(expected_calibration_error(y_test, truth))
    fitted = np.array(fitted)
    print(f"{replicates} replicates of {n} validation images: true T {1 / true_t:.3f}, fitted "
          f"mean {fitted.mean():.3f} (sd {fitted.std():.3f}); ECE {np.mean(before):.4f} -> "
          f"{np.mean(after):.4f} (calibrated truth {np.mean(oracle):.4f})")
    # the model's logits are z / true_t, so the temperature that undoes it is 1 / true_t
    assert abs(fitted.mean() - 1 / true_t) < 0.02 / true_t
    assert np.all(np.abs(fitted - 1 / true_t) < 0.1 / true_t)
    assert np.all(np.array(after) < np.array(before))
    # after scaling, ECE is that of the true probabilities (binning noise only)
    assert abs(np.mean(after) - np.mean(oracle)) < 0.005


def test_a_calibrated_model_keeps_a_temperature_of_one():
    rng = np.random.default_rng(3)
    fitted = [calibration.fit_temperature(*draw(rng, 3000, 3, 1.0)[:2]) for _ in range(100)]
    print(f"100 replicates: fitted T mean {np.mean(fitted):.4f}, sd {np.std(fitted):.4f}")
    assert abs(np.mean(fitted) - 1.0) < 0.01


def test_the_fit_agrees_with_scikit_learns_temperature_calibration():
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    class Logits(ClassifierMixin, BaseEstimator):  # X holds the logits already
        def fit(self, X, y):
            self.classes_ = np.arange(X.shape[1])
            return self

        def decision_function(self, X):
            return X

        def predict(self, X):
            return X.argmax(1)

    rng = np.random.default_rng(11)
    y, probs, _ = draw(rng, 1500, 4, 2.0)
    ours = calibration.scale(probs, calibration.fit_temperature(y, probs))
    logits = calibration.logits_of(probs)
    cal = CalibratedClassifierCV(FrozenEstimator(Logits().fit(logits, y)), method="temperature")
    theirs = cal.fit(logits, y).predict_proba(logits)
    assert np.abs(ours - theirs).max() < 1e-4


def test_scaling_keeps_the_predicted_class_and_sums_to_one():
    rng = np.random.default_rng(0)
    _, probs, _ = draw(rng, 500, 5, 1.7)
    for t in (0.2, 1.0, 4.0):
        scaled = calibration.scale(probs, t)
        assert np.array_equal(scaled.argmax(1), probs.argmax(1))
        assert np.allclose(scaled.sum(1), 1.0)
    assert np.allclose(calibration.scale(probs, 1.0), probs)


def test_brier_score_matches_its_definition():
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert calibration.brier(np.array([0, 0, 0]), probs) == pytest.approx((0 + 0.5 + 2) / 3)


def test_aurc_of_a_perfect_ranking_is_the_closed_form_optimum():
    for n, errors in ((1000, 100), (1311, 262), (200, 0), (50, 50)):
        wrong = np.r_[np.zeros(n - errors), np.ones(errors)]
        conf = np.linspace(1.0, 0.0, n)  # the correct images first: a perfect ranking
        area = float(selective.aurc(conf, wrong)[0])
        assert area == pytest.approx(float(selective.optimal_aurc(n, errors)[0]), abs=1e-12)
        assert float(selective.summary(conf, wrong)["eaurc"][0]) == pytest.approx(0, abs=1e-12)
        # the continuous closed form r + (1 - r) ln(1 - r), within the discretisation (~1/n)
        assert area == pytest.approx(selective.optimal_aurc_limit(errors / n), abs=2 / n)


def test_aurc_of_a_random_ranking_is_the_error_rate():
    rng = np.random.default_rng(5)
    replicates, n, errors = 4000, 300, 60
    wrong = np.r_[np.zeros(n - errors), np.ones(errors)]
    conf = rng.random((replicates, n))  # scores that know nothing about the errors
    areas = selective.aurc(conf, np.broadcast_to(wrong, conf.shape))
    se = areas.std() / np.sqrt(replicates)
    print(f"{replicates} random rankings of {errors} errors in {n}: AURC mean "
          f"{areas.mean():.4f} (se {se:.4f}), expected {errors / n:.4f}")
    assert abs(areas.mean() - errors / n) < 4 * se
    # ties: a constant score is a random ranking, and its expectation is exact
    assert float(selective.aurc(np.ones(n), wrong)[0]) == pytest.approx(errors / n, abs=1e-12)


def test_accuracy_at_coverage_keeps_the_most_confident_share():
    conf = np.arange(10, 0, -1) / 10  # images 0..9, most confident first
    wrong = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 1])
    out = selective.summary(conf, wrong)
    assert out["accuracy_at_coverage_80"][0] == pytest.approx(7 / 8)
    assert out["accuracy_at_coverage_90"][0] == pytest.approx(8 / 9)
    # entropy ranks a peaked distribution above a flat one
    scores = selective.confidence(np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3]]), "entropy")
    assert scores[0] > scores[1]


def test_the_seed_aware_aurc_interval_covers_the_population_value():
    """Images with confidence c ~ U(0, 1) are wrong with probability 0.6 (1 - c): the
    population AURC and accuracy at 90 % coverage come from one very large sample; intervals
    from 300-image test sets (one run, and three runs scoring the same images) must cover them
    about 95 % of the time. With three runs whose only difference is which images err (all
    seed-by-image interaction, no seed effect) the interval is conservative, as the two-level
    accuracy bootstrap is (stats/intervals.py): that interaction enters both levels."""
    rng = np.random.default_rng(21)

    def sample(n, runs=1):
        conf = rng.random(n)
        return [(np.arange(n).astype(str), conf, rng.random(n) < 0.6 * (1 - conf))
                for _ in range(runs)]

    big = sample(400_000)[0]
    truth = {k: float(v[0]) for k, v in selective.summary(big[1], big[2]).items()}
    replicates = 200
    for runs in (1, 3):
        hits = {k: 0 for k in ("aurc", "accuracy_at_coverage_90")}
        for i in range(replicates):
            # runs share the images and confidences; only which images err differs (seed noise)
            units = sample(300, runs)
            out = selective.two_level(units, n_boot=400, seed=i, grid=())
            for k in hits:
                low, high = out[k]["ci95"]
                hits[k] += low <= truth[k] <= high
        print(f"{replicates} replicates, {runs} run(s) of 300 images: coverage "
              + ", ".join(f"{k} {v / replicates:.3f}" for k, v in hits.items())
              + f" (truth {truth})")
        top = 0.99 if runs == 1 else 1.0
        assert all(0.90 <= v / replicates <= top for v in hits.values()), hits
