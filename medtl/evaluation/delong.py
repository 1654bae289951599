"""DeLong's test for the difference between two correlated AUROCs (the same test images scored by two models).

DeLong, DeLong & Clarke-Pearson (Biometrics 44, 1988) estimate the covariance of AUROCs from their *structural
components* (placement values): for a positive, the fraction of negatives it outranks; for a negative, the fraction
of positives that outrank it (ties count one half). Sun & Xu (IEEE Signal Processing Letters 21, 2014) obtain all
of them from midranks in O(N log N) instead of the O(N²) pairwise comparisons:

    V10(positive i) = (rank of i among all − rank of i among positives) / n_neg
    V01(negative j) = 1 − (rank of j among all − rank of j among negatives) / n_pos

A two-model comparison needs no resampling and is exact for ties, which is why it is the standard paired test for
AUROC. medtl's AUROC is the mean of one-vs-rest columns for multi-class data, so the test here is for that mean:
it is a sum of two-sample U-statistics over the K classes (each class a sample of fixed size, as the test split was
drawn stratified), and DeLong's argument gives its variance as the sum over classes c of the sample covariance of
the per-image components T_c(i) divided by the class size N_c, where for an image i of class c

    T_c(i) = (1/|columns|) [ V10_c(i) if c is a column + sum over other columns k of (N_c / n_neg,k) V01_k(i) ].

Binary data has the one column "class 1 vs class 0" and this is DeLong's V10/V01 formula exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` along the last axis, ties given the mean of their ranks (Sun & Xu's Algorithm 1)."""
    order = np.argsort(x, axis=-1, kind="mergesort")
    sorted_x = np.take_along_axis(x, order, -1)
    n = x.shape[-1]
    ranks = np.empty(x.shape, dtype=np.float64)
    for row, (values, o) in enumerate(zip(sorted_x.reshape(-1, n), order.reshape(-1, n))):
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        ends = np.r_[starts[1:], n]
        mid = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of the 1-based ranks starts+1 .. ends
        ranks.reshape(-1, n)[row, o] = mid
    return ranks


def placements(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROC (M,), V10 (M, n_pos) and V01 (M, n_neg) of M models' scores of the positives (M, n_pos) and negatives
    (M, n_neg), by Sun & Xu's midranks."""
    m, n = positive.shape[1], negative.shape[1]
    together = midranks(np.concatenate([positive, negative], axis=1))
    v10 = (together[:, :m] - midranks(positive)) / n
    v01 = 1.0 - (together[:, m:] - midranks(negative)) / m
    return v10.mean(1), v10, v01


def auroc_components(y_true: np.ndarray, scores: np.ndarray, task: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """medtl's AUROC of M models (M,) and, per class c, the structural components T_c (M, N_c) of its images.

    ``scores`` is (M, N, C) class probabilities; binary scores column 1 (as :func:`classification_metrics`), multi-
    class is the macro one-vs-rest mean."""
    if task not in ("binary", "multiclass"):
        raise ValueError(f"DeLong's test is for binary or multi-class AUROC, not {task!r}")
    y_true = np.asarray(y_true).reshape(-1)
    classes = np.arange(scores.shape[2])
    sizes = np.array([(y_true == c).sum() for c in classes])
    if (sizes == 0).any():
        raise ValueError(f"every class needs test images for the AUROC test; class(es) "
                         f"{classes[sizes == 0].tolist()} have none")
    columns = [1] if task == "binary" else list(classes)
    components = [np.zeros((scores.shape[0], size)) for size in sizes]
    auc = np.zeros(scores.shape[0])
    for k in columns:
        is_pos = y_true == k
        a, v10, v01 = placements(scores[:, is_pos, k], scores[:, ~is_pos, k])
        auc += a / len(columns)
        components[k] += v10 / len(columns)
        negatives_class = y_true[~is_pos]
        for c in classes[classes != k]:
            components[c] += v01[:, negatives_class == c] * sizes[c] / (len(y_true) - sizes[k]) / len(columns)
    return auc, components


def auroc_covariance(y_true: np.ndarray, scores: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs (M,) of M models on the same images and DeLong's estimate of their (M, M) covariance."""
    auc, components = auroc_components(y_true, scores, task)
    cov = sum(np.atleast_2d(np.cov(t)) / t.shape[1] for t in components)
    return auc, cov


@dataclass(frozen=True)
class DelongResult:
    """Paired DeLong test of AUROC(a) − AUROC(b): the difference, its standard error, z and the two-sided p."""

    auroc_a: float
    auroc_b: float
    difference: float
    se: float
    z: float
    p: float


def delong_test(y_true: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, task: str) -> DelongResult:
    """Paired two-sided DeLong test that two models' AUROCs on the same test images are equal.

    ``prob_a`` and ``prob_b`` are (N, C) class probabilities of the same N images (in the same order)."""
    prob_a, prob_b = np.asarray(prob_a, dtype=np.float64), np.asarray(prob_b, dtype=np.float64)
    if prob_a.shape != prob_b.shape or prob_a.ndim != 2 or len(prob_a) != len(np.asarray(y_true).reshape(-1)):
        raise ValueError(f"both models must score the same images: got probabilities of shapes {prob_a.shape} and "
                         f"{prob_b.shape} for {len(np.asarray(y_true).reshape(-1))} labels")
    auc, cov = auroc_covariance(y_true, np.stack([prob_a, prob_b]), task)
    difference = float(auc[0] - auc[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0.0:  # identical rankings (or perfect models): no evidence of a difference
        z = 0.0 if difference == 0.0 else float(np.sign(difference) * np.inf)
    else:
        z = difference / se
    return DelongResult(float(auc[0]), float(auc[1]), difference, se, z, float(2 * norm.sf(abs(z))))
