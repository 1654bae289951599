"""Percentile-bootstrap confidence intervals for AUROC, AUPRC and accuracy, vectorised over the resamples.

A test split of a few hundred images gives AUROC a standard error of a few hundredths, so a point estimate alone
cannot say whether two methods differ. The resamples are **stratified**: each class (binary, multi-class) is
resampled with replacement within itself, so every resample keeps the test split's class counts (the split was
drawn stratified) and AUROC is defined in every resample. Multi-label data is resampled as whole rows (a row
carries several labels, so there is no single stratum); a resample in which a label has no positives or no
negatives is left out (its mean over labels is undefined).

Resample ``b`` is represented by how often it draws each test image (``counts[b, i]``), so all resamples are
scored at once: AUROC from the per-resample weights of positives and negatives within each group of tied scores
(the Mann-Whitney statistic with ties counted one half), average precision from weighted cumulative sums over the
same groups. One ``argsort`` per column serves every resample; no metric is called 2,000 times.
"""
from __future__ import annotations

import numpy as np

from .metrics import TASKS

CONFIDENCE = 0.95
CHUNK = 2_000_000  # resample × image cells per block of work: bounds memory to a few tens of MB


def stratified_indices(y_true: np.ndarray, task: str, resamples: int, seed: int) -> np.ndarray:
    """(resamples, N) test-image indices: within each class for binary/multi-class, whole rows for multi-label.

    Seeded with ``numpy.random.default_rng(seed)``, so the same call gives the same resamples."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    if task == "multilabel":
        return rng.integers(0, n, size=(resamples, n))
    indices = np.empty((resamples, n), dtype=np.int64)
    for k in np.unique(y_true):
        members = np.flatnonzero(y_true == k)
        indices[:, members] = members[rng.integers(0, len(members), size=(resamples, len(members)))]
    return indices


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, n) number of times each of the ``n`` images is drawn in each of the B resamples ``indices``."""
    b = len(indices)
    flat = (indices + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def tie_groups(y: np.ndarray, score: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample, the weight of positives and of negatives in each group of tied scores, in ascending order of
    score: two (B, G) arrays for 0/1 ``y`` (N,), ``score`` (N,) and ``counts`` (B, N), G distinct scores."""
    order = np.argsort(score, kind="mergesort")
    sorted_score, weights, is_pos = score[order], counts[:, order], y[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    pos = np.add.reduceat(np.where(is_pos, weights, 0.0), starts, axis=1)
    return pos, np.add.reduceat(weights, starts, axis=1) - pos


def weighted_auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC in each resample (B,) from its :func:`tie_groups` weights: the Mann-Whitney statistic.

    Equals ``roc_auc_score(y[idx], score[idx])`` for the resample ``idx`` (ties count one half); NaN where a
    resample has no positives or no negatives."""
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group of tied scores
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (n_pos * n_neg)


def weighted_average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision (``sklearn.metrics.average_precision_score``) in each resample from its :func:`tie_groups`
    weights: the sum over distinct thresholds, from the highest score down, of the recall gained times the
    precision there."""
    pos, neg = pos[:, ::-1], neg[:, ::-1]  # highest scores first
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * precision).sum(1) / pos.sum(1)


def bootstrap_metrics(y_true: np.ndarray, y_score: np.ndarray, y_pred: np.ndarray, task: str,
                      indices: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC, AUPRC (average precision) and accuracy of every resample in ``indices`` (B, N): (B,) arrays.

    The columns and averaging are those of :func:`~medtl.evaluation.classification_metrics`: binary scores the
    positive class, multi-class is the macro one-vs-rest mean, multi-label the mean over labels (accuracy
    too: per label, then the mean)."""
    n = len(y_true)
    if task == "binary":
        columns = [(y_true, y_score[:, -1])]
    elif task == "multiclass":
        columns = [((y_true == k).astype(np.int64), y_score[:, k]) for k in range(y_score.shape[1])]
    else:
        columns = [(y_true[:, j], y_score[:, j]) for j in range(y_score.shape[1])]
    correct = (y_pred == y_true).reshape(n, -1).mean(1)  # multi-label: the fraction of labels right per row
    results: dict[str, list[np.ndarray]] = {"auroc": [], "auprc": [], "accuracy": []}
    step = max(1, CHUNK // max(n, 1))
    for start in range(0, len(indices), step):
        counts = resample_counts(indices[start:start + step], n)
        groups = [tie_groups(t, s, counts) for t, s in columns]
        results["auroc"].append(np.mean([weighted_auroc(*g) for g in groups], axis=0))
        results["auprc"].append(np.mean([weighted_average_precision(*g) for g in groups], axis=0))
        results["accuracy"].append(counts @ correct / n)
    return {k: np.concatenate(v) for k, v in results.items()}


def confidence_intervals(y_true: np.ndarray, y_score: np.ndarray, y_pred: np.ndarray, task: str, resamples: int,
                         seed: int, level: float = CONFIDENCE) -> dict[str, list[float]]:
    """``{metric: [lower, upper]}``: the (1 - level)/2 and (1 + level)/2 percentiles of the metric over
    ``resamples`` stratified bootstrap resamples (Efron's percentile interval), seeded by ``seed``."""
    indices = stratified_indices(y_true, task, resamples, seed)
    values = bootstrap_metrics(y_true, y_score, y_pred, task, indices)
    tails = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    return {k: [float(q) for q in np.nanpercentile(v, tails)] for k, v in values.items()}
