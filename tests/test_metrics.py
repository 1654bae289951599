"""Metrics must reproduce medmnist's AUC/ACC exactly so results are comparable with the MedMNIST benchmarks."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import IN_CI, SHARED
from medmnist import Evaluator
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from medtl.errors import DataError
from medtl.evaluation import classification_metrics, predictions_table

MEDMNIST_DIR = SHARED / "data/medmnist"  # the official files, in ../shared beside the repository
KEYS = {"auroc", "auprc", "accuracy", "balanced_accuracy", "f1", "auprc_trapz"}


def _softmax_scores(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Probabilities rounded to 2 decimals, so ties (and exact 0.5s for k=2) exercise the tie handling."""
    scores = rng.random((n, k))
    scores = np.round(scores / scores.sum(axis=1, keepdims=True), 2)
    if k == 2:
        scores[:, 0] = 1 - scores[:, 1]
    return scores


def _labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Class indices in which every class occurs, so one-vs-rest AUROC is defined."""
    return rng.permutation(np.arange(n) % k)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [7, 60, 301])
def test_binary_matches_medmnist(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y_true, y_score = _labels(rng, n, 2), _softmax_scores(rng, n, 2)
    ours = classification_metrics(y_true, y_score, "binary")
    assert ours["auroc"] == getAUC(y_true[:, None], y_score, "binary-class")
    assert ours["accuracy"] == getACC(y_true[:, None], y_score, "binary-class")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3, 5, 9, 11])
def test_multiclass_matches_medmnist(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    y_true, y_score = _labels(rng, 40 * k + seed, k), _softmax_scores(rng, 40 * k + seed, k)
    ours = classification_metrics(y_true, y_score, "multiclass")
    assert ours["auroc"] == getAUC(y_true[:, None], y_score, "multi-class")
    assert ours["accuracy"] == getACC(y_true[:, None], y_score, "multi-class")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_labels", [2, 5, 14])
def test_multilabel_matches_medmnist(seed: int, n_labels: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = np.stack([_labels(rng, 200, 2) for _ in range(n_labels)], axis=1)
    y_score = np.round(rng.random((200, n_labels)), 2)
    ours = classification_metrics(y_true, y_score, "multilabel")
    assert ours["auroc"] == getAUC(y_true, y_score, "multi-label, binary-class")
    assert ours["accuracy"] == getACC(y_true, y_score, "multi-label, binary-class")


def test_matches_real_evaluator_on_breastmnist() -> None:
    if not (MEDMNIST_DIR / "breastmnist.npz").is_file():
        message = f"no breastmnist.npz in {MEDMNIST_DIR} (the shared data set directory beside the repository)"
        if IN_CI:  # CI puts a copy of shared/ beside its clone: its absence there is a broken setup, not a skip
            pytest.fail(f"{message}; CI is set, so it must be there")
        pytest.skip(message)
    evaluator = Evaluator("breastmnist", "test", root=str(MEDMNIST_DIR))
    y_score = _softmax_scores(np.random.default_rng(0), len(evaluator.labels), 2)
    ours = classification_metrics(evaluator.labels, y_score, "binary")
    reference = evaluator.evaluate(y_score)
    assert ours["auroc"] == reference.AUC
    assert ours["accuracy"] == reference.ACC


def test_binary_auprc_is_average_precision_and_keys() -> None:
    rng = np.random.default_rng(1)
    y_true, y_score = _labels(rng, 100, 2), _softmax_scores(rng, 100, 2)
    ours = classification_metrics(y_true, y_score, "binary")
    assert set(ours) == KEYS
    assert ours["auprc"] == average_precision_score(y_true, y_score[:, 1])


def test_trapezoidal_auprc_is_optimistic_for_a_constant_score() -> None:
    y_true = np.array([0, 0, 1, 1])
    y_score = np.full((4, 2), 0.5)
    ours = classification_metrics(y_true, y_score, "binary")
    assert ours["auprc"] == pytest.approx(0.5)  # the prevalence, as it should be for an uninformative score
    assert ours["auprc_trapz"] == pytest.approx(0.75)


def test_binary_tie_at_half_predicts_negative_like_medmnist() -> None:
    y_true = np.array([0, 1, 0, 1])
    y_score = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    assert classification_metrics(y_true, y_score, "binary")["accuracy"] == 0.75
    assert predictions_table(y_true, y_score, "binary", ["benign", "malignant"])[0]["prediction"] == 0


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_perfect_classifier_scores_one(task: str) -> None:
    if task == "multilabel":
        y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
        y_score = y_true * 0.8 + 0.1
    else:
        y_true = np.array([0, 1, 2, 1, 0, 2]) if task == "multiclass" else np.array([0, 1, 1, 0])
        y_score = np.eye(y_true.max() + 1)[y_true] * 0.8 + 0.1
    assert classification_metrics(y_true, y_score, task) == {key: 1.0 for key in KEYS}


def test_single_class_raises_data_error_naming_split() -> None:
    with pytest.raises(DataError, match=r"val split.*only 1.*AUROC is undefined"):
        classification_metrics(np.ones(5, dtype=int), np.full((5, 2), 0.5), "binary", split="val")


def test_missing_class_and_constant_label_raise_data_error() -> None:
    with pytest.raises(DataError, match=r"test split.*classes 2 .*AUROC is undefined"):
        classification_metrics(np.array([0, 1, 0, 1]), np.full((4, 3), 1 / 3), "multiclass")
    y_true = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    with pytest.raises(DataError, match=r"labels 1, 2 .*AUROC is undefined"):
        classification_metrics(y_true, np.full((3, 3), 0.5), "multilabel")


def test_multilabel_is_mean_of_per_label_metrics() -> None:
    rng = np.random.default_rng(3)
    y_true = np.stack([_labels(rng, 50, 2) for _ in range(4)], axis=1)
    y_score = rng.random((50, 4))
    ours = classification_metrics(y_true, y_score, "multilabel")
    y_pred = y_score > 0.5
    columns = range(4)
    assert ours["auroc"] == pytest.approx(np.mean([roc_auc_score(y_true[:, j], y_score[:, j]) for j in columns]))
    assert ours["auprc"] == pytest.approx(
        np.mean([average_precision_score(y_true[:, j], y_score[:, j]) for j in columns]))
    assert ours["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert ours["balanced_accuracy"] == pytest.approx(
        np.mean([balanced_accuracy_score(y_true[:, j], y_pred[:, j]) for j in columns]))


@pytest.mark.parametrize(("y_true", "y_score", "task", "message"), [
    (np.zeros(4), np.zeros((5, 2)), "binary", "rows"),
    (np.array([0, 1, 0]), np.zeros((3, 3)), "binary", "2 columns"),
    (np.array([0, 1, 3]), np.zeros((3, 3)), "multiclass", r"0\.\.2"),
    (np.zeros((3, 2)), np.zeros((3, 3)), "multilabel", "same"),
    (np.array([0, 1]), np.zeros((2, 2)), "ordinal", "task"),
])
def test_invalid_input_raises_value_error(y_true: np.ndarray, y_score: np.ndarray, task: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_score, task)


def test_predictions_table_rows() -> None:
    rows = predictions_table(np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.3, 0.6, 0.1]]), "multiclass",
                             ["a", "b", "c"])
    assert rows[1] == {"index": 1, "label": 0, "prob_a": 0.3, "prob_b": 0.6, "prob_c": 0.1, "prediction": 1}
    multilabel = predictions_table(np.array([[1, 0]]), np.array([[0.9, 0.6]]), "multilabel", ["x", "y"])
    assert multilabel == [{"index": 0, "label_x": 1, "label_y": 0, "prob_x": 0.9, "prob_y": 0.6,
                           "pred_x": 1, "pred_y": 1}]
    with pytest.raises(ValueError, match="distinct names"):
        predictions_table(np.array([0]), np.array([[0.4, 0.6]]), "binary", ["a"])
