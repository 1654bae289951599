"""DeLong's paired AUROC test (fast midrank algorithm) against the O(N²) definition, and its use in ``compare``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from medtl.artifacts import write_csv
from medtl.compare.significance import add_p_values, paired_tests
from medtl.compare.summary import markdown
from medtl.evaluation import predictions_table
from medtl.evaluation.delong import auroc_covariance, delong_test, midranks


def slow_auroc_covariance(y: np.ndarray, scores: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The Mann-Whitney definition, pair by pair: the AUROC (mean of one-vs-rest columns) and, for each image i of
    class c, N_c times the sum of every pairwise term of that AUROC in which i takes part; the covariance is the sum
    over classes of the covariance of those components over the class's images, divided by its size."""
    def psi(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    models, n, num_classes = scores.shape
    columns = [1] if task == "binary" else list(range(num_classes))
    aucs = np.zeros(models)
    components = {c: np.zeros((models, (y == c).sum())) for c in range(num_classes)}
    for m in range(models):
        for k in columns:
            pos, neg = np.flatnonzero(y == k), np.flatnonzero(y != k)
            weight = 1.0 / (len(columns) * len(pos) * len(neg))
            for i in pos:
                for j in neg:
                    term = weight * psi(scores[m, i, k], scores[m, j, k])
                    aucs[m] += term
                    components[y[i]][m, np.flatnonzero(np.flatnonzero(y == y[i]) == i)[0]] += term * (y == y[i]).sum()
                    components[y[j]][m, np.flatnonzero(np.flatnonzero(y == y[j]) == j)[0]] += term * (y == y[j]).sum()
    return aucs, sum(np.cov(t) / t.shape[1] for t in components.values())


@pytest.mark.parametrize("task,classes", [("binary", 2), ("multiclass", 3), ("multiclass", 4)])
@pytest.mark.parametrize("ties", [False, True])
def test_fast_delong_matches_the_pairwise_definition(task, classes, ties):
    rng = np.random.default_rng(classes + 10 * ties)
    n = 53
    y = rng.choice(classes, size=n, p=[0.65] + [0.35 / (classes - 1)] * (classes - 1))  # unequal class sizes
    y[:classes] = np.arange(classes)
    scores = rng.random((3, n, classes)) + 0.3 * np.eye(classes)[y]
    if ties:
        scores = scores.round(1)
    aucs, cov = auroc_covariance(y, scores, task)
    slow_aucs, slow_cov = slow_auroc_covariance(y, scores, task)
    np.testing.assert_allclose(aucs, slow_aucs, atol=1e-6)
    np.testing.assert_allclose(cov, slow_cov, atol=1e-6)
    if task == "binary":
        assert aucs[0] == pytest.approx(roc_auc_score(y, scores[0, :, 1]))


def test_midranks_average_tied_ranks():
    np.testing.assert_array_equal(midranks(np.array([[3.0, 1.0, 3.0, 2.0, 3.0]])), [[4.0, 1.0, 4.0, 2.0, 4.0]])


def test_paired_test_separates_a_better_model_and_not_an_equal_one():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.4).astype(int)
    good = np.c_[1 - (g := 1 / (1 + np.exp(-(2 * y - 1) * 1.5 - rng.normal(size=300)))), g]
    weak = np.c_[1 - (w := rng.random(300)), w]
    assert delong_test(y, good, weak, "binary").p < 1e-6
    same = delong_test(y, good, good, "binary")
    assert same.difference == 0 and same.p == 1.0
    with pytest.raises(ValueError, match="same images"):
        delong_test(y, good, good[:-1], "binary")


def fake_run(runs, name, labels, prob, task="binary"):
    """A run directory as ``medtl train`` leaves it, as far as the significance test reads it."""
    (runs / name).mkdir(parents=True)
    classes = [f"c{k}" for k in range(prob.shape[1])]
    write_csv(runs / name / "predictions_test.csv", predictions_table(labels, prob, task, classes))
    (runs / name / "model.json").write_text(json.dumps({"task": task}))


def test_compare_table_gets_a_combined_p_value_against_full(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.5).astype(int)
    records, table = [], []
    for strategy, strength in (("full", 1.0), ("truncated", 1.0), ("linear", 0.0)):
        table.append({"method": {"full": "FTL", "truncated": "TTL-1", "linear": "linear"}[strategy],
                      "strategy": strategy, "cut": None if strategy != "truncated" else "blocks.3"})
        for seed in (0, 1):
            logit = strength * (2 * y - 1) + rng.normal(size=200)
            fake_run(tmp_path / "runs", f"{strategy}-s{seed}", y, softmax(np.c_[np.zeros(200), logit], 1))
            records.append({"strategy": strategy, "cut": table[-1]["cut"], "repeat": seed,
                            "run": f"{strategy}-s{seed}"})
    tests = paired_tests(table, records, tmp_path / "runs")
    for method in ("TTL-1", "linear"):
        mine = [t for t in tests if t["method"] == method]
        assert [t["repeat"] for t in mine] == [0, 1, "combined"]
        z = (mine[0]["z"] + mine[1]["z"]) / 2
        assert mine[2]["z"] == pytest.approx(z)
    annotated = add_p_values(table, records, tmp_path)
    p = {r["method"]: r["p_vs_full"] for r in annotated}
    assert p["FTL"] is None and p["linear"] < 1e-6 and p["TTL-1"] > 0.01
    assert (tmp_path / "significance.csv").is_file()
    rows = [{**r, "cut": r["cut"], **{f"{k}_{s}": 0.5 for k in ("test_auroc", "test_auprc", "test_accuracy",
            "val_auprc", "latency_ms") for s in ("mean", "std")}, "trainable_parameters": 1, "parameters": 1,
             "macs": 1} for r in annotated]
    text = markdown(rows, "method")
    assert "p vs FTL" in text.splitlines()[0] and "< 0.001" in text
    assert p["FTL"] is None and p["linear"] < 1e-6 and p["TTL-1"] > 0.01
    versus = {r["method"]: r["p_vs_truncated"] for r in annotated}  # the second reference: TTL-1
    assert versus["TTL-1"] is None and versus["linear"] < 1e-6 and versus["FTL"] > 0.01
    assert "p vs TTL" in text.splitlines()[0] and (tmp_path / "significance_vs_truncated.csv").is_file()
    no_full = add_p_values([r for r in table if r["strategy"] != "full"],
                           [r for r in records if r["strategy"] != "full"], tmp_path)
    assert all("p_vs_full" not in r for r in no_full)  # no FTL: no column
