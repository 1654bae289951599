"""A run's test predictions (``predictions_test.csv``) and what the report computes from them itself: curves, the
confusion matrix, the per-class table and calibration. Computing them here keeps the report independent of which
statistics a run's ``metrics.json`` happens to hold (runs written by older medtl versions hold fewer)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ..errors import ConfigError
from ..rundir import RunDir

PREDICTIONS = RunDir.PREDICTIONS
BINS = 10


@dataclass
class Predictions:
    """``labels`` (N,) class indices, or (N, L) 0/1 for multi-label; ``probs`` (N, C); ``predicted`` as the run
    stored it (medmnist's rule: binary column 1 > 0.5, multi-class argmax)."""

    classes: list[str]
    labels: np.ndarray
    probs: np.ndarray
    predicted: np.ndarray

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    @property
    def binary(self) -> bool:
        return not self.multilabel and len(self.classes) == 2

    def one_vs_rest(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(name, 0/1 targets, scores)`` per curve: the positive class for binary, every class or label else."""
        if self.binary:
            return [(self.classes[1], (self.labels == 1).astype(int), self.probs[:, 1])]
        if self.multilabel:
            return [(c, self.labels[:, j], self.probs[:, j]) for j, c in enumerate(self.classes)]
        return [(c, (self.labels == k).astype(int), self.probs[:, k]) for k, c in enumerate(self.classes)]

    def counts(self) -> list[int]:
        """Test images per class (per label: positives)."""
        if self.multilabel:
            return self.labels.sum(0).astype(int).tolist()
        return np.bincount(self.labels, minlength=len(self.classes)).tolist()

    def confusion(self) -> np.ndarray | None:
        """Rows: true class, columns: predicted class (None for multi-label: no single class per image)."""
        if self.multilabel:
            return None
        k = len(self.classes)
        return np.bincount(self.labels * k + self.predicted, minlength=k * k).reshape(k, k)

    def per_class(self) -> list[dict]:
        """Support, precision, sensitivity (recall), specificity, F1, AUROC and AUPRC of each class or label, one
        against the rest, at the stored predictions."""
        rows = []
        for j, name in enumerate(self.classes):
            if self.multilabel:
                truth, hit, score = self.labels[:, j] == 1, self.predicted[:, j] == 1, self.probs[:, j]
            else:
                truth, hit, score = self.labels == j, self.predicted == j, self.probs[:, j]
            tp, fp = int((truth & hit).sum()), int((~truth & hit).sum())
            fn, tn = int((truth & ~hit).sum()), int((~truth & ~hit).sum())
            both = 0 < truth.sum() < len(truth)
            rows.append({
                "class": name, "support": int(truth.sum()), "precision": _ratio(tp, tp + fp),
                "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
                "f1": _ratio(2 * tp, 2 * tp + fp + fn),
                "auroc": float(roc_auc_score(truth, score)) if both else None,
                "auprc": float(average_precision_score(truth, score)) if both else None,
            })
        return rows

    def calibration(self, bins: int = BINS) -> tuple[list[dict], float]:
        """Reliability bins of the confidence in the predicted class (multi-label: of every label's probability):
        mean confidence, accuracy and count per bin, and the expected calibration error."""
        if self.multilabel:
            confidence = self.probs.ravel()
            correct = (self.labels.ravel() == 1).astype(float)
        else:
            confidence = self.probs[np.arange(len(self.probs)), self.predicted]
            correct = (self.predicted == self.labels).astype(float)
        edges = np.linspace(0, 1, bins + 1)
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        rows, ece = [], 0.0
        for b in range(bins):
            mask = which == b
            if mask.any():
                rows.append({"low": edges[b], "high": edges[b + 1], "confidence": float(confidence[mask].mean()),
                             "accuracy": float(correct[mask].mean()), "count": int(mask.sum())})
                ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
        return rows, float(ece)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def read_predictions(path: str | Path, classes: list[str] | None = None) -> Predictions:
    """Read a predictions CSV written by :func:`medtl.evaluation.predictions_table`."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns, rows = reader.fieldnames or [], list(reader)
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror}).") from None
    names = [c[len("prob_"):] for c in columns if c.startswith("prob_")]
    if not rows or not names:
        raise ConfigError(f"{path} has no predictions (expected columns label, prob_<class>, prediction).")
    try:
        probs = np.array([[float(r[f"prob_{c}"]) for c in names] for r in rows])
        if "label" in columns:
            labels = np.array([int(r["label"]) for r in rows])
            predicted = np.array([int(r["prediction"]) for r in rows])
        else:
            labels = np.array([[int(r[f"label_{c}"]) for c in names] for r in rows])
            predicted = np.array([[int(r[f"pred_{c}"]) for c in names] for r in rows])
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{path} is not a medtl predictions table ({type(e).__name__}: {e}).") from None
    return Predictions(list(classes or names), labels, probs, predicted)
