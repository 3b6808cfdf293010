"""The calibrated refusal model: fitting on made-up drafts, and the decision it makes."""

import numpy as np

from eval.calibrate import best_threshold, fit
from rag.calibration import FEATURES, RefusalModel, features, load, question_coverage


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
    assert model.p_right(features(0.9, 0.9, 0.5, 0.5, 1.0, flags)) > 0.5
    assert model.p_right(features(0.9, 0.1, 0.5, 0.5, 1.0, flags)) < 0.5


def test_question_coverage_is_the_share_of_question_terms_in_the_evidence() -> None:
    evidence = "Foreign Minister Toshimitsu Motegi told reporters in Nagoya."
    assert question_coverage("Where did Motegi speak to reporters?", evidence) == 2 / 3
    assert question_coverage("Where did Kono speak to journalists?", evidence) == 0.0
    assert question_coverage("Where is it?", evidence) == 1.0  # no content terms: no evidence


def test_the_committed_model_has_every_feature_and_names_what_it_was_fitted_on() -> None:
    model = load()
    assert model is not None, "rag/refusal_model.json is missing: run `make calibrate`"
    assert set(model.weights) == set(FEATURES)
    assert 0.0 < model.threshold < 1.0
    assert model.fitted_on and not any("test" in name for name in model.fitted_on)
