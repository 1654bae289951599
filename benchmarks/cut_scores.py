"""Which one-pass score should ``--cut auto`` use?  Candidates scored on the same pooled pretrained features
against the exhaustive fine-tuned curve that ``benchmarks/cut_choice.py`` left in a directory:

    python benchmarks/cut_scores.py runs/cut-choice-64 [runs/cut-choice-128 ...]

- ``ridge-loo``: medtl's estimate (closed-form leave-one-out ridge probe on train+val, AUROC);
- ``logistic-val``: logistic regression fitted on the training split, AUROC on the validation split;
- ``logistic-cv5``: 5-fold stratified cross-validated logistic regression on train+val, AUROC;
- ``logme``: LogME (You et al., ICML 2021), the evidence of Bayesian linear regression of the one-hot labels
  (:func:`medtl.analysis.transferability.logme`; ``cut_estimators.py`` compares every ``--cut-estimator``).

For each: Spearman's rho between the score and the fine-tuned mean test / validation AUROC across cuts, the test
AUROC of the highest-scoring cut and its gap to the best cut, and the seconds spent scoring (features excluded).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(dirs: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    import torch
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medtl.analysis.autocut import pooled_features, probe_predictions, score
    from medtl.analysis.transferability import logme
    from medtl.resolve import load_data, model_weights
    from medtl.config import TrainConfig

    torch.set_num_threads(1)

    def logistic() -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))

    report = {}
    for directory in map(Path, dirs):
        choice = json.loads((directory / "cut_choice.json").read_text())
        cfg = TrainConfig(backbone=choice["backbone"], data=choice["data"], image_size=choice["image_size"]).validate()
        data = load_data(cfg)
        cuts, features = pooled_features(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg))
        y = np.concatenate([data.train.labels.numpy(), data.val.labels.numpy()])
        n_train = len(data.train)
        scorers = {
            "ridge-loo": lambda x: score(y, probe_predictions(x, y, data.task), data.task, "auroc"),
            "logistic-val": lambda x: roc_auc_score(
                y[n_train:], logistic().fit(x[:n_train], y[:n_train]).predict_proba(x[n_train:])[:, 1]),
            "logistic-cv5": lambda x: roc_auc_score(y, cross_val_predict(
                logistic(), x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]),
            "logme": lambda x: logme(x, y),
        }
        curve = {r["cut"]: r for r in choice["curve"]}  # the fine-tuned means, as cut_choice.py summarised them
        best = max(r["test_auroc_mean"] for r in curve.values())
        rows = []
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scores = [scorer(x) for x in features]
            seconds = time.perf_counter() - start
            top = cuts[int(np.argmax(scores))].name
            top_auroc = curve[top]["test_auroc_mean"]
            rows.append({"scorer": name, "seconds": seconds, "top_cut": top, "top_test_auroc": top_auroc,
                         "gap": best - top_auroc,
                         "rho_test": spearmanr(scores, [curve[c.name]["test_auroc_mean"] for c in cuts]).statistic,
                         "rho_val": spearmanr(scores, [curve[c.name]["val_auroc_mean"] for c in cuts]).statistic})
        report[str(directory)] = rows
        print(f"\n{directory} ({choice['image_size']} px, {len(cuts)} cuts, best test AUROC {best:.3f})")
        print("| score | rho vs test AUROC | rho vs val AUROC | top cut | its test AUROC | gap | seconds |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['scorer']} | {r['rho_test']:.2f} | {r['rho_val']:.2f} | {r['top_cut']} | "
                  f"{r['top_test_auroc']:.3f} | {r['gap']:+.3f} | {r['seconds']:.1f} |")
    out = Path(dirs[0]).parent / "cut_scores.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
