"""The statistics every run reports beyond its point estimates: what a reviewer asks for before believing them.

One pure function, :func:`evidence`, turns the selected model's test and validation outputs into ``metrics.json``
entries (confidence intervals, the confusion matrix and per-class metrics, ordinal agreement, calibration) and the
temperature-scaled test probabilities. Keys (all test-split numbers are on the model's own probabilities, i.e.
before temperature scaling, except ``test_ece_calibrated``):

- ``test_auroc_ci``, ``test_auprc_ci``, ``test_accuracy_ci``: [lower, upper] 95% stratified percentile-bootstrap
  interval (:mod:`.bootstrap`); ``bootstrap_resamples``: how many resamples (0: no intervals, keys absent).
- ``test_confusion_matrix``, ``test_per_class`` (:func:`.metrics.class_report`).
- with ``ordinal``: ``test_quadratic_kappa``, ``test_mean_absolute_error`` (:func:`.metrics.ordinal_metrics`).
- ``temperature``: T fitted on the validation split; ``test_ece`` and ``test_ece_calibrated``: 15-bin one-vs-rest
  ECE of the test probabilities before and after dividing the logits by T (:mod:`.calibration`).
"""
from __future__ import annotations

import numpy as np

from medtl.errors import ConfigError

from .bootstrap import confidence_intervals
from .calibration import expected_calibration_error, fit_temperature, scaled_probabilities
from .metrics import _predict, _validate, class_report, ordinal_metrics


def evidence(test_labels: np.ndarray, test_prob: np.ndarray, test_logits: np.ndarray, val_labels: np.ndarray,
             val_logits: np.ndarray, task: str, classes: list[str], *, ordinal: bool = False, bootstrap: int = 2000,
             seed: int = 0) -> tuple[dict, np.ndarray, float]:
    """``(metrics, calibrated test probabilities, temperature)`` for a trained model.

    ``test_prob`` are the probabilities the test metrics were computed from, ``test_logits`` and ``val_logits``
    the matching logits (N, C); ``bootstrap`` resamples (0: none) are drawn with ``seed``; ``ordinal`` says the
    class order is a grade order."""
    if ordinal and task == "multilabel":
        raise ConfigError("ordinal needs one grade per image; multi-label data has several labels per image.")
    test_labels, test_prob = _validate(test_labels, test_prob, task)
    metrics: dict = {"bootstrap_resamples": bootstrap}
    if bootstrap:
        intervals = confidence_intervals(test_labels, test_prob, _predict(test_prob, task), task, bootstrap, seed)
        metrics |= {f"test_{k}_ci": v for k, v in intervals.items()}
    metrics |= {f"test_{k}": v for k, v in class_report(test_labels, test_prob, task, classes).items()}
    if ordinal:
        metrics |= {f"test_{k}": v for k, v in ordinal_metrics(test_labels, test_prob).items()}
    temperature = fit_temperature(_validate(val_labels, val_logits, task)[0], val_logits, task)
    calibrated = scaled_probabilities(test_logits, temperature, task)
    metrics |= {"temperature": temperature, "test_ece": expected_calibration_error(test_labels, test_prob, task),
                "test_ece_calibrated": expected_calibration_error(test_labels, calibrated, task)}
    return metrics, calibrated, temperature


def with_calibrated(rows: list[dict], calibrated: np.ndarray, classes: list[str]) -> list[dict]:
    """Prediction-table rows with a ``calibrated_prob_<class>`` column per class (the temperature-scaled
    probabilities) appended; the model's own ``prob_<class>`` columns stay as they are."""
    return [row | {f"calibrated_prob_{c}": float(p) for c, p in zip(classes, probs)}
            for row, probs in zip(rows, calibrated)]
