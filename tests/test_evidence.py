"""The statistics of every run: bootstrap intervals, calibration, confusion matrix, per-class and ordinal metrics."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import (accuracy_score, average_precision_score, cohen_kappa_score, mean_absolute_error,
                             precision_recall_fscore_support, roc_auc_score)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from medtl.evaluation import classification_metrics, evidence
from medtl.evaluation.bootstrap import bootstrap_metrics, confidence_intervals, stratified_indices
from medtl.evaluation.calibration import expected_calibration_error, fit_temperature, scaled_probabilities
from medtl.evaluation.metrics import class_report, ordinal_metrics


def scored(n: int, seed: int = 0, classes: int = 2, ties: bool = False):
    """Labels drawn from softmax(logits), so the logits are the true ones (calibrated), and the probabilities
    (with tied scores when ``ties``); unequal class sizes, every class present."""
    rng = np.random.default_rng(seed)
    logits = 2 * rng.normal(size=(n, classes)) + np.log([0.6] + [0.4 / (classes - 1)] * (classes - 1))
    y = (rng.random((n, 1)) > np.cumsum(softmax(logits, axis=1), axis=1)).sum(1)
    y[:classes] = np.arange(classes)
    prob = softmax(logits.round(1) if ties else logits, axis=1)
    return y, prob, logits


@pytest.mark.parametrize("task,classes,ties", [("binary", 2, False), ("binary", 2, True), ("multiclass", 4, True)])
def test_bootstrap_matches_sklearn_on_the_same_resamples(task, classes, ties):
    y, prob, _ = scored(60, classes=classes, ties=ties)
    pred = prob.argmax(1)
    indices = stratified_indices(y, task, 25, seed=3)
    fast = bootstrap_metrics(y, prob, pred, task, indices)
    for b, idx in enumerate(indices):
        columns = [(y[idx], prob[idx, 1])] if task == "binary" else [(y[idx] == k, prob[idx, k]) for k in
                                                                    range(classes)]
        assert fast["auroc"][b] == pytest.approx(np.mean([roc_auc_score(t, s) for t, s in columns]), abs=1e-12)
        assert fast["auprc"][b] == pytest.approx(np.mean([average_precision_score(t, s) for t, s in columns]),
                                                 abs=1e-12)
        assert fast["accuracy"][b] == pytest.approx(accuracy_score(y[idx], pred[idx]), abs=1e-12)


def test_multilabel_bootstrap_resamples_rows_and_matches_sklearn():
    rng = np.random.default_rng(2)
    labels, scores = (rng.random((40, 3)) < 0.3).astype(int), rng.random((40, 3)).round(1)
    indices = stratified_indices(labels, "multilabel", 20, seed=1)
    fast = bootstrap_metrics(labels, scores, (scores > 0.5).astype(int), "multilabel", indices)
    for b, idx in enumerate(indices):
        t, s = labels[idx], scores[idx]
        if all(0 < t[:, j].sum() < len(t) for j in range(3)):
            assert fast["auroc"][b] == pytest.approx(np.mean([roc_auc_score(t[:, j], s[:, j]) for j in range(3)]))
        else:  # a label without positives or negatives: AUROC undefined, left out of the interval
            assert np.isnan(fast["auroc"][b])
        assert fast["accuracy"][b] == pytest.approx(((s > 0.5) == t).mean())


def test_stratified_resamples_keep_the_class_counts():
    y, _, _ = scored(80, classes=3)
    indices = stratified_indices(y, "multiclass", 50, seed=0)
    assert (np.sort(y[indices], axis=1) == np.sort(y)).all()


def test_bootstrap_interval_contains_the_estimate_narrows_with_n_and_repeats_with_the_seed():
    widths = []
    for n in (100, 1600):
        y, prob, _ = scored(n, seed=n)
        point = classification_metrics(y, prob, "binary")
        ci = confidence_intervals(y, prob, (prob[:, 1] > 0.5).astype(int), "binary", 500, seed=0)
        for key in ("auroc", "auprc", "accuracy"):
            assert ci[key][0] <= point[key] <= ci[key][1]
        widths.append(ci["auroc"][1] - ci["auroc"][0])
        assert ci == confidence_intervals(y, prob, (prob[:, 1] > 0.5).astype(int), "binary", 500, seed=0)
    assert widths[1] < widths[0] / 2  # the width shrinks like 1/sqrt(n): 16× the images, about 1/4 the width


def test_ece_by_hand():
    # positive-class probabilities 0.05, 0.10 (bin 0 and 1 of 15), 0.95 ×2 (bin 14); targets 0, 1, 1, 0:
    # bin 0: |0 − 0.05| · 1/4; bin 1: |1 − 0.10| · 1/4; bin 14: |0.5 − 0.95| · 2/4
    p = np.array([0.05, 0.10, 0.95, 0.95])
    ece = expected_calibration_error(np.array([0, 1, 1, 0]), np.c_[1 - p, p], "binary")
    assert ece == pytest.approx((0.05 + 0.90 + 2 * 0.45) / 4)
    # multi-class: the mean over one-vs-rest columns; a one-hot perfect prediction has ECE 0
    assert expected_calibration_error(np.array([0, 2, 1]), np.eye(3)[[0, 2, 1]], "multiclass") == 0.0
    # probability exactly 1 falls in the last bin
    assert expected_calibration_error(np.array([1]), np.array([[0.0, 1.0]]), "binary") == 0.0


@pytest.mark.parametrize("task,classes", [("binary", 2), ("multiclass", 4)])
def test_temperature_scaling_undoes_over_confidence(task, classes):
    y_val, _, val_logits = scored(400, seed=1, classes=classes)
    y_test, _, test_logits = scored(400, seed=2, classes=classes)
    temperature = fit_temperature(y_val, 5 * val_logits, task)  # logits × 5: far too confident
    assert 3.5 < temperature < 7
    before = scaled_probabilities(5 * test_logits, 1.0, task)
    after = scaled_probabilities(5 * test_logits, temperature, task)
    assert expected_calibration_error(y_test, after, task) < expected_calibration_error(y_test, before, task) / 2
    assert (after.argmax(1) == before.argmax(1)).all()
    if task == "binary":  # a monotone map of the positive-class score: the ranking, so AUROC, is unchanged
        assert roc_auc_score(y_test, after[:, 1]) == roc_auc_score(y_test, before[:, 1])


def test_confusion_matrix_and_per_class_metrics_match_sklearn():
    y, prob, _ = scored(120, seed=4, classes=4)
    pred = prob.argmax(1)
    report = class_report(y, prob, "multiclass", ["a", "b", "c", "d"])
    assert report["confusion_matrix"] == sk_confusion_matrix(y, pred).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    for k, name in enumerate("abcd"):
        got = report["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
            (precision[k], recall[k], f1[k], support[k]))
    labels = (np.random.default_rng(0).random((50, 3)) < 0.4).astype(int)
    scores = np.random.default_rng(1).random((50, 3))
    multi = class_report(labels, scores, "multilabel", ["x", "y", "z"])
    for j, name in enumerate("xyz"):
        assert multi["confusion_matrix"][j] == sk_confusion_matrix(labels[:, j], scores[:, j] > 0.5).tolist()
        assert multi["per_class"][name]["support"] == labels[:, j].sum()


def test_quadratic_kappa_and_grade_error_match_sklearn():
    rng = np.random.default_rng(5)
    grades = rng.integers(0, 5, 200)
    prob = softmax(rng.normal(size=(200, 5)) + 2 * np.eye(5)[np.clip(grades + rng.integers(-1, 2, 200), 0, 4)], 1)
    got = ordinal_metrics(grades, prob)
    assert got["quadratic_kappa"] == pytest.approx(cohen_kappa_score(grades, prob.argmax(1), weights="quadratic"))
    assert got["mean_absolute_error"] == pytest.approx(mean_absolute_error(grades, prob.argmax(1)))


def test_evidence_keys_and_calibrated_probabilities():
    y_val, _, val_logits = scored(100, seed=6)
    y, _, logits = scored(150, seed=7)
    prob = softmax(3 * logits, 1)
    metrics, calibrated, temperature = evidence(y, prob, 3 * logits, y_val, 3 * val_logits, "binary",
                                                ["benign", "malignant"], ordinal=True, bootstrap=200, seed=0)
    assert set(metrics) == {"bootstrap_resamples", "test_auroc_ci", "test_auprc_ci", "test_accuracy_ci",
                            "test_confusion_matrix", "test_per_class", "test_quadratic_kappa",
                            "test_mean_absolute_error", "temperature", "test_ece", "test_ece_calibrated"}
    assert metrics["temperature"] == temperature > 1 and metrics["test_ece_calibrated"] < metrics["test_ece"]
    np.testing.assert_allclose(calibrated, softmax(3 * logits / temperature, 1), atol=1e-12)
    off, _, _ = evidence(y, prob, 3 * logits, y_val, 3 * val_logits, "binary", ["benign", "malignant"], bootstrap=0)
    assert "test_auroc_ci" not in off and "test_quadratic_kappa" not in off and off["bootstrap_resamples"] == 0


@pytest.mark.slow
def test_train_reports_the_statistics_for_ordinal_grades(tmp_path, capsys):
    """A short ``medtl train --ordinal`` on synthetic 5-grade images (brightness rises with the grade) writes every
    new key, prints the AUROC interval on its summary line, and its kappa is scikit-learn's on its predictions."""
    import csv
    import json

    import medtl
    from medtl.cli import main

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 150), ("val", 50), ("test", 60)):
        grades = np.arange(n) % 5
        images = 40 * grades[:, None, None] + rng.normal(40, 25, size=(n, 28, 28))
        arrays[f"{split}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = grades[:, None]
    data = tmp_path / "grades.npz"
    np.savez(data, **arrays)
    assert main(["train", "--data", str(data), "--cut", "blocks.2", "--epochs", "3", "--warmup-epochs", "1",
                 "--image-size", "32", "--batch-size", "16", "--lr", "3e-3", "--threads", "1", "--ordinal",
                 "--bootstrap", "500",
                 "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    lo, hi = metrics["test_auroc_ci"]
    assert f"test AUROC {metrics['test_auroc']:.4f} (95% CI {lo:.3f}–{hi:.3f})" in summary
    assert metrics["bootstrap_resamples"] == 500 and len(metrics["test_confusion_matrix"]) == 5
    assert sum(c["support"] for c in metrics["test_per_class"].values()) == 60
    rows = list(csv.DictReader(open(run / "predictions_test.csv")))
    labels, predictions = [int(r["label"]) for r in rows], [int(r["prediction"]) for r in rows]
    assert len(set(predictions)) >= 3  # it learned something, so the comparison below is not of two zeros
    assert metrics["test_quadratic_kappa"] == pytest.approx(cohen_kappa_score(labels, predictions, weights="quadratic"))
    assert metrics["test_mean_absolute_error"] == pytest.approx(mean_absolute_error(labels, predictions))
    calibrated = np.array([[float(r[f"calibrated_prob_{k}"]) for k in range(5)] for r in rows])
    assert (calibrated.argmax(1) == predictions).all() and np.allclose(calibrated.sum(1), 1)
    assert medtl.load_model(run).spec.temperature == pytest.approx(metrics["temperature"])
    assert 0 <= metrics["test_ece_calibrated"] <= 1 and 0 <= metrics["test_ece"] <= 1


def test_statistics_options_in_help_and_checked(capsys):
    from medtl.cli import main

    with pytest.raises(SystemExit) as done:  # a stray % in a help text breaks argparse's --help
        main(["train", "--help"])
    assert done.value.code == 0 and "--bootstrap" in capsys.readouterr().out
    assert main(["train", "--bootstrap", "-1"]) == 2
    assert "bootstrap must be >= 0" in capsys.readouterr().err
