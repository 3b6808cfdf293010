"""The calibrated refusal model: fitting on made-up drafts, and the decision it makes."""

import numpy as np

from eval.calibrate import best_threshold, fit
from rag.calibration import FEATURES, RefusalModel, features


def test_a_separable_signal_gets_a_positive_weight_and_a_threshold_between() -> None:
    rng = np.random.default_rng(0)
    good = rng.normal(2.0, 0.5, size=(40, 1))
    bad = rng.normal(-2.0, 0.5, size=(40, 1))
    x = np.vstack([good, bad])
    y = np.array([1.0] * 40 + [0.0] * 40)
    weights, bias = fit(x, y)
    assert weights[0] > 0
    p = 1 / (1 + np.exp(-(x @ weights + bias)))
    threshold = best_threshold(p, y.astype(bool), np.array([True] * 40 + [False] * 40))
    assert p[:40].min() >= threshold > p[40:].max()


def test_the_model_reads_its_features_by_name() -> None:
    model = RefusalModel(weights={name: 0.0 for name in FEATURES} | {"verification_logit": 1.0},
                         bias=0.0, threshold=0.5, fitted_on=[], generator="g")
    flags = {"answer type": False, "echo": False, "invented name": False}
    assert model.p_right(features(0.9, 0.9, 0.5, 0.5, flags)) > 0.5
    assert model.p_right(features(0.9, 0.1, 0.5, 0.5, flags)) < 0.5
