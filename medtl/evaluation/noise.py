"""How much a validation metric moves with the choice of validation images: the noise a choice between cuts (a
rung of successive halving, the pick of a search) has to beat before it means anything.

- :func:`standard_error` is closed-form, from the metric's value and the split's class counts alone, so it can be
  applied to the scores a run's ``history.csv`` records (no predictions needed): Hanley & McNeil (Radiology 1982)
  for AUROC, the binomial approximation of Boyd, Eng & Page (ECML 2013) for AUPRC;
- :func:`paired_difference_se` is the stratified bootstrap standard error of the difference of one metric between
  two models scored on the same images (the resamples are shared, so what the images have in common cancels).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .bootstrap import bootstrap_metrics, stratified_indices

NOISE_METRICS = ("auroc", "auprc")


def auroc_standard_error(auroc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's standard error of an AUROC estimated from ``positives`` and ``negatives`` images."""
    a = min(max(float(auroc), 0.0), 1.0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    return float(np.sqrt(max(var, 0.0)))


def auprc_standard_error(auprc: float, positives: int) -> float:
    """Boyd et al.'s binomial standard error of an AUPRC estimated with ``positives`` positive images."""
    a = min(max(float(auprc), 0.0), 1.0)
    return float(np.sqrt(a * (1 - a) / positives))


def standard_error(metric: str, value: float, labels: np.ndarray, task: str) -> float:
    """Standard error of ``metric`` (auroc, auprc) at ``value`` on images with ``labels``. Multi-class and
    multi-label metrics are means over one-vs-rest columns; the columns' errors are averaged (as if perfectly
    correlated: an upper bound, so a noise band built on it errs towards keeping a candidate)."""
    if metric not in NOISE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(NOISE_METRICS)}, got {metric!r}")
    labels = np.asarray(labels)
    if task == "multilabel":
        columns = [labels[:, j] for j in range(labels.shape[1])]
    elif task == "binary":
        columns = [labels == 1]
    else:
        columns = [labels == k for k in np.unique(labels)]
    errors = []
    for truth in columns:
        pos = int(np.sum(truth))
        neg = len(truth) - pos
        if pos == 0 or neg == 0:
            continue
        errors.append(auroc_standard_error(value, pos, neg) if metric == "auroc" else auprc_standard_error(value, pos))
    if not errors:
        raise ValueError("a standard error needs images of at least two classes")
    return float(np.mean(errors))


def noise_of(metric: str, labels: np.ndarray, task: str) -> Callable[[float], float]:
    """The function ``value -> standard error`` of ``metric`` on these validation ``labels``."""
    return partial(standard_error, metric, labels=np.asarray(labels), task=task)


def paired_difference_se(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, task: str, metric: str,
                         resamples: int = 1000, seed: int = 0) -> float:
    """Stratified bootstrap standard error of ``metric(a) - metric(b)`` on the same images (scores ``(N, C)``)."""
    indices = stratified_indices(y_true, task, resamples, seed)
    dummy = np.zeros(len(y_true), dtype=np.int64) if task != "multilabel" else np.zeros_like(y_true)
    a = bootstrap_metrics(y_true, score_a, dummy, task, indices)[metric]
    b = bootstrap_metrics(y_true, score_b, dummy, task, indices)[metric]
    diff = a - b
    return float(np.nanstd(diff[np.isfinite(diff)], ddof=1))
