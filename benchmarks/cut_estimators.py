"""Which ``--cut-estimator`` to trust?  Every estimator against exhaustive fine-tuned curves (``cut_choice.py``):

    python benchmarks/cut_estimators.py benchmarks/results/cut-choice-64.json benchmarks/results/cut-choice-128.json \\
        --multiexit-epochs 5 --out benchmarks/results/cut-estimators

Per curve and estimator: the weighted Kendall tau (``scipy.stats.weightedtau``: hyperbolic weights on rank, so the
order among the best cuts counts most) between the estimator's scores and the fine-tuned mean test AUROC (and
validation AUROC) across cuts; the estimator's pick (its own rule: ridge and multiexit the shallowest cut within one
standard error of the best, the others the best score) and the gap of the pick's test AUROC to the best cut's; its
cost. The one-pass estimators share one forward pass (the pooled features); their seconds are the pass plus the
scoring. The machine's load changes seconds, so the cost is also given as a share of one full fine-tune of the
curve *after scaling by the load*: the ridge estimate (pass included) is timed now and its recorded time in the curve
file gives the slowdown. The multi-exit run's cost is also given in full-network epochs against the full fine-tune's.
Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("curves", nargs="+", type=Path, help="cut_choice.json files (the exhaustive curves)")
    p.add_argument("--estimators", default="ridge,logme,hscore,nleep,sfda,multiexit")
    p.add_argument("--multiexit-epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch
    from scipy.stats import weightedtau

    from medtl.analysis.autocut import estimate_cut, pooled_features, sample, score_cuts, MAX_IMAGES
    from medtl.config import TrainConfig
    from medtl.resolve import load_data, model_weights, volume_of

    torch.set_num_threads(args.threads)
    names = args.estimators.split(",")
    report = json.loads(args.out.with_suffix(".json").read_text()) if args.out.with_suffix(".json").is_file() else {}
    for path in args.curves:
        choice = json.loads(path.read_text())
        cfg = TrainConfig(backbone=choice["backbone"], data=choice["data"], image_size=choice["image_size"]).validate()
        data = load_data(cfg)
        volume = volume_of(cfg, data)
        curve = {r["cut"]: r for r in choice["curve"]}
        best_cut = max(curve, key=lambda c: curve[c]["test_auroc_mean"])
        full = choice["full_fine_tune_seconds"]
        full_epochs = curve[list(curve)[-1]].get("epochs_run_mean", choice["epochs"])
        start = time.perf_counter()
        y = np.concatenate([data.train.labels.numpy(), data.val.labels.numpy()])
        index = sample(y, MAX_IMAGES, data.task)
        cuts, features = pooled_features(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg), index=index,
                                         volume=volume)
        y = y if index is None else y[index]
        feature_seconds = time.perf_counter() - start
        rows, slowdown = [], None
        for name in names:
            start = time.perf_counter()
            if name == "multiexit":
                est = estimate_cut(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg), volume=volume,
                                   estimator="multiexit", epochs=args.multiexit_epochs)
                scores, pick, seconds = est.scores, est.pick, est.seconds
            else:
                scores, _, _, pick = score_cuts(cuts, features, y, data.task, "auroc", name)
                seconds = feature_seconds + time.perf_counter() - start
            if name == "ridge":
                slowdown = seconds / choice["auto_seconds"]["1"]
            values = [s.score for s in scores]
            row = {"estimator": name, "pick": pick, "pick_test_auroc": curve[pick]["test_auroc_mean"],
                   "gap": curve[best_cut]["test_auroc_mean"] - curve[pick]["test_auroc_mean"],
                   "tau_w_test": weightedtau(values, [curve[s.cut]["test_auroc_mean"] for s in scores]).statistic,
                   "tau_w_val": weightedtau(values, [curve[s.cut]["val_auroc_mean"] for s in scores]).statistic,
                   "seconds_now": seconds, "scores": {s.cut: s.score for s in scores}}
            if name == "multiexit":
                row["epochs"] = args.multiexit_epochs
                row["cost_epochs_share_of_full_fine_tune"] = args.multiexit_epochs / full_epochs
            rows.append(row)
            print(f"{path.name} {name}: pick {pick} gap {row['gap']:+.3f} tau_w {row['tau_w_test']:.2f} "
                  f"{seconds:.1f}s", flush=True)
        for row in rows:
            row["slowdown_now"] = slowdown
            row["cost_share_of_full_fine_tune"] = row["seconds_now"] / slowdown / full if slowdown else None
        report[f"{choice['data']}-{choice['image_size']}"] = {
            "curve": str(path.name), "best_cut": best_cut, "best_test_auroc": curve[best_cut]["test_auroc_mean"],
            "full_fine_tune_seconds_recorded": full, "full_fine_tune_epochs": full_epochs, "seeds": choice["seeds"],
            "images_scored": len(y), "rows": rows}
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = ["| data | estimator | weighted τ vs test AUROC | vs val AUROC | pick | its test AUROC | gap to best | "
             "cost (share of one fine-tune, load-corrected) |", "|---|---|---|---|---|---|---|---|"]
    for key, r in report.items():
        for row in r["rows"]:
            cost = row["cost_share_of_full_fine_tune"]
            extra = (f"; {row['epochs']} of {r['full_fine_tune_epochs']:.0f} full-network epochs"
                     if row["estimator"] == "multiexit" else "")
            lines.append(f"| {key} | {row['estimator']} | {row['tau_w_test']:.2f} | {row['tau_w_val']:.2f} | "
                         f"{row['pick']} | {row['pick_test_auroc']:.3f} | {row['gap']:+.3f} | "
                         f"{'' if cost is None else f'{cost:.1%}'}{extra} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
