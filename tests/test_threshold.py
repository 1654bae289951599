"""The operating point: Youden's J and target-sensitivity thresholds chosen on validation scores."""
from __future__ import annotations

import numpy as np
import pytest

from medtl.errors import ConfigError, DataError, MedtlWarning
from medtl.evaluation.threshold import choose_threshold, operating_point


def test_youden_separates_a_separable_set_between_the_classes():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = choose_threshold(y, s)
    assert t == pytest.approx(0.5)  # the midpoint between 0.3 and 0.7
    assert operating_point(y, s, t) == {"sensitivity": 1.0, "specificity": 1.0, "ppv": 1.0, "npv": 1.0}


def test_youden_matches_a_brute_force_search():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) * 0.6 + 0.3 * y, 2)  # rounded: many tied scores
    t = choose_threshold(y, s)
    best = max(np.unique(s), key=lambda c: (lambda o: o["sensitivity"] + o["specificity"])(operating_point(y, s, c)))
    at = operating_point(y, s, t)
    ref = operating_point(y, s, best)
    assert at["sensitivity"] + at["specificity"] == pytest.approx(ref["sensitivity"] + ref["specificity"])


def test_ties_in_j_go_to_the_higher_sensitivity():
    # threshold 0.5 (between 0.4 and 0.6) and 0.25 both give J = 0.5; the lower one keeps every positive
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.6, 0.9])
    t = choose_threshold(y, s)
    assert t == pytest.approx(0.25)
    assert operating_point(y, s, t)["sensitivity"] == 1.0


def test_tied_scores_are_never_split_by_the_threshold():
    y = np.array([0, 1, 0, 1, 1])
    s = np.array([0.2, 0.5, 0.5, 0.5, 0.8])
    t = choose_threshold(y, s)
    assert t != 0.5 and (s >= t).sum() in (0, 1, 4, 5)


def test_all_equal_scores_call_everything_positive():
    y = np.array([0, 1, 0, 1])
    s = np.full(4, 0.3)
    assert choose_threshold(y, s) == 0.3
    assert operating_point(y, s, 0.3)["sensitivity"] == 1.0
    assert choose_threshold(y, s, target_sensitivity=0.9) == 0.3  # one candidate only: no warning needed


def test_target_sensitivity_keeps_the_best_specificity():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    t = choose_threshold(y, s, target_sensitivity=0.75)
    at = operating_point(y, s, t)
    assert at["sensitivity"] == 0.75 and at["specificity"] == 1.0
    t = choose_threshold(y, s, target_sensitivity=1.0)
    at = operating_point(y, s, t)
    assert at["sensitivity"] == 1.0 and at["specificity"] == 0.75


def test_target_sensitivity_reached_only_by_calling_everything_positive_warns():
    y = np.array([1, 0, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9])  # the lowest score is a positive: sensitivity 1 needs threshold 0.1
    with pytest.warns(MedtlWarning, match="every validation image positive"):
        assert choose_threshold(y, s, target_sensitivity=1.0) == pytest.approx(0.1)


@pytest.mark.parametrize("target", [0.0, 1.5, -0.1])
def test_target_sensitivity_outside_0_1_is_refused(target):
    with pytest.raises(ConfigError, match="target sensitivity"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), target_sensitivity=target)


def test_a_single_class_has_no_threshold():
    with pytest.raises(DataError, match="positive and negative"):
        choose_threshold(np.array([1, 1]), np.array([0.2, 0.8]))


def test_undefined_ratios_are_nan():
    at = operating_point(np.array([0, 1]), np.array([0.2, 0.4]), 0.5)  # nothing called positive
    assert np.isnan(at["ppv"]) and at["sensitivity"] == 0.0 and at["npv"] == 0.5


def test_run_operating_point_is_chosen_on_validation_and_scored_on_test():
    from medtl.evaluation.threshold import run_operating_point

    val_y, val_p = np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    test_y, test_p = np.array([0, 1, 1]), np.array([[0.6, 0.4], [0.5, 0.5], [0.1, 0.9]])
    out = run_operating_point(val_y, val_p, test_y, test_p, "binary")
    assert out["threshold"] == pytest.approx(0.45) and out["threshold_rule"] == "Youden's J"
    assert out["test_sensitivity"] == 1.0 and out["test_specificity"] == 1.0
    out = run_operating_point(val_y, val_p, test_y, test_p, "binary", target_sensitivity=0.5)
    assert out["threshold"] == pytest.approx(0.7) and out["test_sensitivity"] == 0.5
    assert run_operating_point(val_y, np.c_[val_p, val_p[:, :1]], test_y, np.c_[test_p, test_p[:, :1]],
                               "multiclass") == {}
