"""Calibration: expected calibration error, and temperature scaling fitted on the validation split.

A model selected for AUROC can rank well and still be over-confident (Guo, Pleiss, Sun & Weinberger, *On
Calibration of Modern Neural Networks*, ICML 2017): its 0.95 may be right 80% of the time. A reader of a
probability needs it to mean what it says, so every run reports the expected calibration error (ECE; Naeini, Cooper
& Hauskrecht, AAAI 2015) before and after temperature scaling: all logits divided by one scalar T > 0, fitted on
the validation split's negative log-likelihood. One scalar cannot overfit a small validation split, and dividing
logits by T changes neither the predicted class nor (binary, multi-label) the ranking, so AUROC and accuracy stay
as they were; only the probabilities move.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_expit, log_softmax

from .metrics import TASKS

BINS = 15
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))  # T from 0.05 to 20; the optimum of real models lies well inside


def expected_calibration_error(y_true: np.ndarray, y_score: np.ndarray, task: str, bins: int = BINS) -> float:
    """ECE with ``bins`` equal-width bins, one-vs-rest.

    For one binary column (a class's probability p_i and the 0/1 target t_i of "is that class"), image i falls in
    bin b = min(floor(p_i · bins), bins − 1), and

        ECE = sum over bins b of (n_b / N) · | mean of t_i in b − mean of p_i in b |

    (empty bins contribute 0). Binary tasks score the positive class's column (column 1); multi-class tasks average
    this over the C one-vs-rest columns (class-wise ECE, Kull et al. 2019; it also sees the calibration of the
    classes that are not predicted, unlike top-label ECE); multi-label tasks average over labels."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if task == "binary":
        targets, probs = y_true.reshape(-1, 1) == 1, y_score[:, 1:]
    elif task == "multiclass":
        targets, probs = y_true.reshape(-1, 1) == np.arange(y_score.shape[1]), y_score
    else:
        targets, probs = y_true.astype(bool), y_score
    n = len(probs)
    bin_of = np.minimum((probs * bins).astype(np.int64), bins - 1)
    errors = []
    for j in range(probs.shape[1]):
        gap = np.bincount(bin_of[:, j], weights=targets[:, j] - probs[:, j], minlength=bins)
        errors.append(np.abs(gap).sum() / n)  # |sum over the bin of (t − p)| / N = (n_b/N)·|mean t − mean p|
    return float(np.mean(errors))


def scaled_probabilities(logits: np.ndarray, temperature: float, task: str) -> np.ndarray:
    """Softmax (multi-label: sigmoid) of ``logits / temperature``, computed in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    return np.exp(log_expit(z) if task == "multilabel" else log_softmax(z, axis=1))


def negative_log_likelihood(y_true: np.ndarray, logits: np.ndarray, temperature: float, task: str) -> float:
    """Mean cross-entropy of ``logits / temperature`` (multi-label: mean binary cross-entropy over labels)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if task == "multilabel":
        t = np.asarray(y_true, dtype=np.float64)
        return float(-(t * log_expit(z) + (1 - t) * log_expit(-z)).mean())
    return float(-np.take_along_axis(log_softmax(z, axis=1), np.asarray(y_true).reshape(-1, 1), 1).mean())


def fit_temperature(y_true: np.ndarray, logits: np.ndarray, task: str) -> float:
    """The temperature T minimising the validation NLL of ``logits / T`` (Guo et al. 2017).

    A bounded scalar minimisation over log T (T stays positive, and the NLL is smooth in log T); T > 1 softens
    over-confident probabilities, T < 1 sharpens under-confident ones."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    result = minimize_scalar(lambda log_t: negative_log_likelihood(y_true, logits, np.exp(log_t), task),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))
