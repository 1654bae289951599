"""Transferability estimators (medtl.analysis.transferability) on small cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from medtl.analysis.transferability import SCORES, hscore, leep, logme, nleep, sfda


def _blobs(n: int = 200, d: int = 4, gap: float = 20.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return rng.normal(size=(n, d)) + gap * y[:, None], y


def test_logme_is_the_maximised_evidence_of_bayesian_linear_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)

    def best_evidence(t: np.ndarray) -> float:  # log N(t; 0, I/beta + x x^T/alpha), maximised by brute force
        def negative(p: np.ndarray) -> float:
            alpha, beta = np.exp(p)
            return -multivariate_normal(np.zeros(len(t)), np.eye(len(t)) / beta + x @ x.T / alpha).logpdf(t)
        return -min(minimize(negative, start, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}).fun
                    for start in ([0.0, 0.0], [2.0, 1.0], [-2.0, 2.0]))

    expected = np.mean([best_evidence((y == c).astype(float)) for c in (0, 1)]) / len(y)
    assert logme(x, y) == pytest.approx(expected, abs=1e-5)


def test_hscore_is_the_share_of_variance_between_the_class_means():
    x, y = _blobs(d=1, gap=2.0)
    g = np.where(y == 1, x[y == 1].mean(), x[y == 0].mean())
    # one channel: Ledoit-Wolf does not shrink, so H = var(E[f|y]) / var(f) (np.cov's n-1 over the MLE's n)
    assert hscore(x, y) == pytest.approx(np.var(g, ddof=1) / np.var(x), rel=1e-9)
    assert hscore(*_blobs(d=4, gap=20.0)) > 0.95  # nearly all spread is between the classes
    rng = np.random.default_rng(1)
    assert hscore(rng.normal(size=(400, 4)), np.arange(400) % 2) < 0.05  # none is


def test_leep_and_nleep_known_values():
    y = np.r_[np.zeros(30), np.ones(10)].astype(int)
    assert leep(np.eye(2)[y], y) == pytest.approx(0.0)  # assignments that are the labels: log 1
    prior = 0.75 * np.log(0.75) + 0.25 * np.log(0.25)  # one assignment for all: the labels' log prior
    assert leep(np.ones((40, 1)), y) == pytest.approx(prior)
    assert nleep(*_blobs(gap=20.0)) == pytest.approx(0.0, abs=1e-3)  # mixture components inside one class each
    rng = np.random.default_rng(2)
    assert nleep(rng.normal(size=(400, 4)), np.arange(400) % 2) < np.log(0.5) + 0.1  # near the prior's log 0.5


def test_sfda_is_near_one_for_separable_classes_and_near_chance_for_noise():
    assert sfda(*_blobs(gap=20.0)) > 0.95
    rng = np.random.default_rng(3)
    assert sfda(rng.normal(size=(400, 4)), np.arange(400) % 2) == pytest.approx(0.5, abs=0.05)
    wide = rng.normal(size=(60, 200))  # more channels than images: the shrinkage keeps the scatter invertible
    assert np.isfinite(sfda(wide, np.arange(60) % 2))


@pytest.mark.parametrize("name", sorted(SCORES))
def test_every_score_ranks_informative_features_above_noise_and_refuses_multilabel(name):
    x, y = _blobs(gap=3.0)
    noise = np.random.default_rng(4).normal(size=x.shape)
    assert SCORES[name](x, y) > SCORES[name](noise, y)
    with pytest.raises(ValueError, match="one class label per image"):
        SCORES[name](x, np.c_[y, y])
