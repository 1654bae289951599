"""The operating point of a binary classifier: a decision threshold chosen on validation, and what it gives.

The arg-max (probability > 0.5) is one arbitrary point of the ROC curve; on an unbalanced chest X-ray set it gave
sensitivity 0.99 but specificity 0.59. A run therefore stores a threshold chosen on the validation split only, and
reports sensitivity, specificity, PPV and NPV at it on the test split, next to the threshold-free metrics.

Rule used everywhere (training, ``predict``, exported models): an image is positive when its positive-class
probability is ``>= threshold``. Candidate thresholds are the lowest validation score (everything positive) and
the midpoints between consecutive distinct validation scores, so that a score differing in the last digits between
back-ends (torch, onnxruntime) falls on the same side as it did on validation.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError, DataError, MedtlWarning


def choose_threshold(y_true: np.ndarray, score: np.ndarray, target_sensitivity: float | None = None) -> float:
    """The decision threshold on the positive-class ``score`` for binary labels ``y_true`` (0/1).

    Without ``target_sensitivity``: the threshold maximising Youden's J (sensitivity + specificity - 1); ties go to
    the lowest such threshold (the higher sensitivity: a missed finding usually costs more than a false alarm).
    With ``target_sensitivity`` S in (0, 1]: the highest threshold whose sensitivity is at least S (the best
    specificity that keeps S). S is always reachable, at worst by calling every image positive; when only that
    reaches it, a warning says so.
    """
    y_true, score = _check(y_true, score)
    if target_sensitivity is not None and not 0 < target_sensitivity <= 1:
        raise ConfigError(f"target sensitivity must be in (0, 1], got {target_sensitivity}.")
    values = np.unique(score)  # ascending
    candidates = np.concatenate([values[:1], (values[:-1] + values[1:]) / 2])
    sensitivity, specificity = _rates(y_true, score, candidates)
    if target_sensitivity is None:
        j = sensitivity + specificity - 1
        return float(candidates[np.flatnonzero(j == j.max())[0]])
    reaching = np.flatnonzero(sensitivity >= target_sensitivity - 1e-12)  # never empty: candidates[0] reaches 1.0
    pick = reaching[-1]
    if pick == 0 and len(candidates) > 1:
        warnings.warn(f"a validation sensitivity of {target_sensitivity} is reached only by calling every validation "
                      "image positive (specificity 0); the threshold is the lowest validation score.",
                      MedtlWarning, stacklevel=2)
    return float(candidates[pick])


def operating_point(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV at ``threshold`` (positive: ``score >= threshold``).

    A ratio whose denominator is zero (PPV when nothing is called positive) is NaN, not a made-up 0 or 1.
    """
    y_true, score = _check(y_true, score)
    positive = score >= threshold
    tp = float(np.sum(positive & (y_true == 1)))
    fp = float(np.sum(positive & (y_true == 0)))
    tn = float(np.sum(~positive & (y_true == 0)))
    fn = float(np.sum(~positive & (y_true == 1)))
    return {"sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp),
            "npv": _ratio(tn, tn + fn)}


def _rates(y_true: np.ndarray, score: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity at every threshold (ascending), from one sort."""
    pos, neg = np.sort(score[y_true == 1]), np.sort(score[y_true == 0])
    sensitivity = 1 - np.searchsorted(pos, thresholds, side="left") / len(pos)  # share of positives >= threshold
    specificity = np.searchsorted(neg, thresholds, side="left") / len(neg)  # share of negatives < threshold
    return sensitivity, specificity


def _check(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, score = np.asarray(y_true).reshape(-1), np.asarray(score, dtype=np.float64).reshape(-1)
    if len(y_true) != len(score) or len(score) == 0:
        raise ValueError(f"y_true ({len(y_true)}) and score ({len(score)}) must be non-empty and of one length")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("a threshold is defined for binary labels 0/1 only")
    if np.unique(y_true).size < 2:
        raise DataError("choosing a threshold needs positive and negative images in the validation split; it has "
                        f"only class {int(y_true[0])}.")
    return y_true.astype(np.int64), score


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def run_operating_point(val_true: np.ndarray, val_prob: np.ndarray, test_true: np.ndarray, test_prob: np.ndarray,
                        task: str, target_sensitivity: float | None = None) -> dict:
    """For a binary run: the threshold chosen on validation, how it was chosen, and the test metrics at it (keys as
    in ``metrics.json``: ``threshold``, ``threshold_rule``, ``test_sensitivity``, ...); ``{}`` for other tasks."""
    if task != "binary":
        return {}
    threshold = choose_threshold(val_true, val_prob[:, 1], target_sensitivity)
    rule = "Youden's J" if target_sensitivity is None else f"target sensitivity {target_sensitivity}"
    test = operating_point(test_true, test_prob[:, 1], threshold)
    return {"threshold": threshold, "threshold_rule": rule, **{f"test_{k}": v for k, v in test.items()}}
