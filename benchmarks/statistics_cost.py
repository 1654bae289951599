"""What the statistics of every run cost: the 2,000-resample bootstrap of test AUROC/AUPRC/accuracy and the paired
DeLong test, at BreastMNIST's (156) and PneumoniaMNIST's (624) test sizes, against scikit-learn's ``roc_auc_score``
called once per resample (AUROC alone). Synthetic scores; best of 5 repeats (a shared machine adds noise):

    python benchmarks/statistics_cost.py
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from medtl.evaluation.bootstrap import confidence_intervals, stratified_indices
from medtl.evaluation.delong import delong_test

RESAMPLES = 2000


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    print("| test images | bootstrap, 2,000 resamples (AUROC + AUPRC + accuracy) | scikit-learn loop (AUROC only) "
          "| DeLong test |\n|---|---|---|---|")
    for n in (156, 624):
        y = (rng.random(n) < 0.73).astype(int)
        a, b = (1 / (1 + np.exp(-s * (2 * y - 1) - rng.normal(size=n))) for s in (1.0, 0.5))
        prob_a, prob_b = np.c_[1 - a, a], np.c_[1 - b, b]
        fast = best_of(lambda: confidence_intervals(y, prob_a, (a > 0.5).astype(int), "binary", RESAMPLES, 0))
        indices = stratified_indices(y, "binary", RESAMPLES, 0)
        slow = best_of(lambda: [roc_auc_score(y[i], a[i]) for i in indices], repeats=1)
        delong = best_of(lambda: delong_test(y, prob_a, prob_b, "binary"))
        print(f"| {n} | {fast:.2f} s | {slow:.1f} s | {delong * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
