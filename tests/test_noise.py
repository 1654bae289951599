"""Standard errors of validation metrics (medtl.evaluation.noise) against known values and the bootstrap."""
from __future__ import annotations

import numpy as np
import pytest

from medtl.evaluation.noise import auprc_standard_error, auroc_standard_error, paired_difference_se, standard_error


def test_hanley_mcneil_and_boyd_closed_forms():
    # A = 0.5, 50 + 50 images: Q1 = Q2 = 1/3, var = (1/4 + 49/6 + 49/6 - 2·49/4) / 2500
    assert auroc_standard_error(0.5, 50, 50) == pytest.approx(np.sqrt((0.25 + 98 * (1 / 3 - 0.25)) / 2500))
    assert auroc_standard_error(1.0, 10, 10) == 0.0
    assert auprc_standard_error(0.9, 100) == pytest.approx(0.03)
    # multi-class: the mean of the one-vs-rest columns' errors
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    expected = np.mean([auroc_standard_error(0.8, n, 60 - n) for n in (10, 20, 30)])
    assert standard_error("auroc", 0.8, labels, "multiclass") == pytest.approx(expected)
    with pytest.raises(ValueError, match="two classes"):
        standard_error("auroc", 0.8, np.ones(5, dtype=int), "binary")


def test_closed_form_agrees_with_the_bootstrap_and_the_paired_difference_cancels_what_is_shared():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(57), np.zeros(21)].astype(int)
    signal = y * 1.4 + rng.normal(size=len(y))  # binormal, AUROC about 0.84
    a = np.c_[-signal, signal]
    from sklearn.metrics import roc_auc_score

    from medtl.evaluation.bootstrap import bootstrap_metrics, stratified_indices

    boot = bootstrap_metrics(y, a, np.zeros(len(y), dtype=int), "binary", stratified_indices(y, "binary", 2000, 1))
    closed = auroc_standard_error(roc_auc_score(y, signal), 57, 21)
    assert np.std(boot["auroc"]) == pytest.approx(closed, rel=0.2)
    assert paired_difference_se(y, a, a, "binary", "auroc") == 0.0
    # a second model sharing most of the signal: its difference varies far less than either metric
    b_signal = signal + 0.3 * rng.normal(size=len(y))
    b = np.c_[-b_signal, b_signal]
    paired = paired_difference_se(y, a, b, "binary", "auroc")
    assert 0 < paired < 0.5 * closed
