"""Classification metrics, with AUROC and accuracy computed exactly as ``medmnist.Evaluator`` computes them.

Matching MedMNIST's numbers bit for bit keeps results comparable with the published benchmarks; AUPRC and the
hard-prediction metrics are added because AUROC hides poor performance on rare classes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (accuracy_score, auc, average_precision_score, balanced_accuracy_score, f1_score,
                             precision_recall_curve, roc_auc_score)

from medtl.errors import DataError

TASKS = ("binary", "multiclass", "multilabel")
THRESHOLD = 0.5  # medmnist's threshold for binary and multi-label predictions


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str,
                           split: str = "test") -> dict[str, float]:
    """AUROC, AUPRC (average precision and the paper's trapezoidal variant), accuracy, balanced accuracy, macro F1.

    ``y_true`` is (N,) class indices (binary, multiclass) or (N, L) 0/1 (multilabel); ``y_score`` is (N, C)
    probabilities, with 2 softmax columns for binary. Raises ``DataError`` naming ``split`` when AUROC is undefined.
    """
    y_true, y_score = _validate(y_true, y_score, task)
    columns = _one_vs_rest(y_true, y_score, task)
    _require_both_classes(columns, task, split)
    y_pred = _predict(y_score, task)
    if task == "multilabel":
        per_label = [(y_true[:, j], y_pred[:, j]) for j in range(y_true.shape[1])]
        accuracy = _mean([accuracy_score(t, p) for t, p in per_label])
        balanced = _mean([balanced_accuracy_score(t, p) for t, p in per_label])
    else:
        accuracy, balanced = accuracy_score(y_true, y_pred), balanced_accuracy_score(y_true, y_pred)
    return {
        "auroc": _mean([roc_auc_score(t, s) for t, s in columns]),
        "auprc": _mean([average_precision_score(t, s) for t, s in columns]),
        "accuracy": float(accuracy),
        "balanced_accuracy": float(balanced),
        "f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0.0)),
        "auprc_trapz": _mean([_trapezoidal_auprc(t, s) for t, s in columns]),
    }


def single_class_metrics(y_true: np.ndarray, y_score: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """What can be said of images that all hold one class (an external set of, say, only grade-4 scans): AUROC and
    AUPRC are undefined (None); accuracy is then that class's recall (sensitivity, or specificity for the negative
    class of a binary task), and the mean probability of each class shows how sure the model was."""
    y_true, y_score = _validate(y_true, y_score, "multiclass" if y_score.shape[1] > 2 else "binary")
    (label,) = np.unique(y_true)
    accuracy = float((y_score.argmax(1) == label).mean())
    return {"auroc": None, "auprc": None, "accuracy": accuracy, f"recall_{classes[label]}": accuracy,
            **{f"mean_prob_{c}": float(y_score[:, j].mean()) for j, c in enumerate(classes)}}


def predictions_table(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str],
                      ids: Sequence[str] | None = None) -> list[dict[str, int | float | str]]:
    """One row per sample (for a predictions CSV), so individual errors can be inspected after training.

    Columns: ``index``, ``id`` (with ``ids``: the image's file path, or its CSV row / npz index where it has none,
    so a row can be traced to its image), ``label`` (multilabel: ``label_<class>``), ``prob_<class>``,
    ``prediction`` (multilabel: ``pred_<class>``); labels and predictions are class indices or 0/1.
    """
    y_true, y_score = _validate(y_true, y_score, task)
    if len(classes) != y_score.shape[1] or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be {y_score.shape[1]} distinct names (one per y_score column), got {classes}")
    if ids is not None and len(ids) != len(y_score):
        raise ValueError(f"ids has {len(ids)} entries but y_score has {len(y_score)} rows")
    y_pred = _predict(y_score, task)
    rows: list[dict[str, int | float | str]] = []
    for i in range(len(y_score)):
        row: dict[str, int | float | str] = {"index": i}
        if ids is not None:
            row["id"] = str(ids[i])
        if task == "multilabel":
            row |= {f"label_{c}": int(v) for c, v in zip(classes, y_true[i])}
        else:
            row["label"] = int(y_true[i])
        row |= {f"prob_{c}": float(p) for c, p in zip(classes, y_score[i])}
        if task == "multilabel":
            row |= {f"pred_{c}": int(v) for c, v in zip(classes, y_pred[i])}
        else:
            row["prediction"] = int(y_pred[i])
        rows.append(row)
    return rows


def _validate(y_true: np.ndarray, y_score: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Reject mismatched arrays up front; sklearn would fail with a message about its internals, or not at all."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_score.ndim != 2 or len(y_score) == 0:
        raise ValueError(f"y_score must be a non-empty (N, C) array, got shape {y_score.shape}")
    if y_true.shape[:1] != y_score.shape[:1]:
        raise ValueError(f"y_true has shape {y_true.shape} but y_score has {len(y_score)} rows")
    if task == "multilabel":
        if y_true.shape != y_score.shape:
            raise ValueError(f"multilabel y_true and y_score must have the same (N, L) shape, "
                             f"got {y_true.shape} and {y_score.shape}")
        n_values = 2
    else:
        if y_true.ndim == 2 and y_true.shape[1] == 1:  # MedMNIST stores labels as (N, 1)
            y_true = y_true[:, 0]
        if y_true.ndim != 1:
            raise ValueError(f"{task} y_true must be (N,) class indices, got shape {y_true.shape}")
        if task == "binary" and y_score.shape[1] != 2:
            raise ValueError(f"binary y_score must have 2 columns (softmax over classes 0 and 1), "
                             f"got {y_score.shape[1]}")
        n_values = y_score.shape[1]
    if not np.isin(y_true, np.arange(n_values)).all():
        raise ValueError(f"{task} y_true values must be integers in 0..{n_values - 1}")
    return y_true.astype(np.int64), y_score


def _one_vs_rest(y_true: np.ndarray, y_score: np.ndarray, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(binary targets, scores) per class or label, as medmnist's ``getAUC`` splits them; binary uses column 1."""
    if task == "binary":
        return [(y_true, y_score[:, -1])]
    if task == "multiclass":
        return [((y_true == k).astype(np.int64), y_score[:, k]) for k in range(y_score.shape[1])]
    return [(y_true[:, j], y_score[:, j]) for j in range(y_score.shape[1])]


def _require_both_classes(columns: list[tuple[np.ndarray, np.ndarray]], task: str, split: str) -> None:
    """AUROC needs positives and negatives in every column; say which ones lack them rather than return NaN."""
    single = [i for i, (t, _) in enumerate(columns) if np.unique(t).size < 2]
    if not single:
        return
    ids = ", ".join(map(str, single))
    if task == "binary":
        raise DataError(f"the {split} split has a single class in y_true (only {columns[0][0][0]}), so AUROC is "
                        f"undefined; evaluate on a split that contains both classes")
    if task == "multiclass":
        what, why = f"the one-vs-rest targets of classes {ids}", "each class is absent or is every sample"
    else:
        what, why = f"labels {ids}", "all 0 or all 1"
    raise DataError(f"in the {split} split, {what} have a single class in y_true ({why}), so AUROC is undefined; "
                    f"evaluate on a split where every class or label has positives and negatives")


def _predict(y_score: np.ndarray, task: str) -> np.ndarray:
    """Hard predictions as medmnist's ``getACC`` makes them (binary: column 1 > 0.5, so a 0.5 tie predicts 0)."""
    if task == "multiclass":
        return np.argmax(y_score, axis=-1)
    if task == "binary":
        return (y_score[:, -1] > THRESHOLD).astype(np.int64)
    return (y_score > THRESHOLD).astype(np.int64)


def _trapezoidal_auprc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the PR curve by the trapezoidal rule, as the TruncatedTL paper computed it (optimistic)."""
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    return float(auc(recall, precision))


def _mean(values: list[float]) -> float:
    """Left-to-right mean, as medmnist sums: ``np.mean`` (pairwise) and 3.12's ``sum`` (compensated) can differ."""
    total = 0.0
    for value in values:
        total += value
    return float(total / len(values))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class (scikit-learn's layout)."""
    return np.bincount(np.asarray(y_true).reshape(-1) * num_classes + np.asarray(y_pred).reshape(-1),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_report(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str]) -> dict:
    """The errors behind the summary numbers, on medmnist's hard predictions.

    ``confusion_matrix``: binary/multi-class (C, C) counts, row = true class, column = predicted (as scikit-learn);
    multi-label one [[TN, FP], [FN, TP]] per label. ``per_class``: ``{class: {precision, recall, f1, support}}``
    (support = images of the class; multi-label: positives of the label; an undefined ratio is 0, as scikit-learn's
    ``zero_division=0``)."""
    y_true, y_score = _validate(y_true, y_score, task)
    y_pred = _predict(y_score, task)
    if task == "multilabel":
        matrices = np.stack([confusion_matrix(y_true[:, j], y_pred[:, j], 2) for j in range(y_true.shape[1])])
        tp, fp, fn = matrices[:, 1, 1], matrices[:, 0, 1], matrices[:, 1, 0]
        matrix = matrices.tolist()
    else:
        square = confusion_matrix(y_true, y_pred, y_score.shape[1])
        tp, fp, fn = np.diag(square), square.sum(0) - np.diag(square), square.sum(1) - np.diag(square)
        matrix = square.tolist()
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    per_class = {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                 for c, p, r, f, s in zip(classes, precision, recall, f1, tp + fn)}
    return {"confusion_matrix": matrix, "per_class": per_class}


def ordinal_metrics(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """Agreement of predicted and true grades when the classes are ordered (class index = grade).

    ``quadratic_kappa``: Cohen's kappa with weights (i − j)² / (C − 1)², the usual score for disease grading (a
    grade off by two costs four times one off by one); 1 is perfect, 0 chance agreement. ``mean_absolute_error``:
    the mean of |predicted grade − true grade|, in grades. Kappa is 0 when every image is of one grade and is
    predicted so (chance agreement is then perfect too)."""
    y_true, y_score = _validate(y_true, y_score, "multiclass")
    y_pred = _predict(y_score, "multiclass")
    c = y_score.shape[1]
    observed = confusion_matrix(y_true, y_pred, c).astype(np.float64)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    weights = (np.arange(c)[:, None] - np.arange(c)[None, :]) ** 2 / max(c - 1, 1) ** 2
    chance = (weights * expected).sum()
    kappa = 1.0 - (weights * observed).sum() / chance if chance > 0 else 0.0
    return {"quadratic_kappa": float(kappa), "mean_absolute_error": float(np.abs(y_pred - y_true).mean())}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)
