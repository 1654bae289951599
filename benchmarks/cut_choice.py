"""How well do ``--cut auto`` and ``medtl search`` choose the cut?  One command per image size:

    python benchmarks/cut_choice.py --image-size 64 --out benchmarks/results/cut-choice-64

1. the exhaustive curve: TruncatedTL fine-tuned at every cut of the backbone (``medtl compare --strategies
   truncated --cuts <every cut>``, the last cut being full fine-tuning), over the seeds;
2. ``medtl search`` and ``medtl search --cut auto`` on the same output directory: they share the finished runs, so
   they cost nothing more here, and the cost they report is the training time of the runs they chose to train;
3. the one-pass estimate alone (``estimate_cut``), timed with one torch thread (as each grid worker had) and
   with every thread, against one full fine-tuning run of the grid;
4. Spearman's rank correlation between the estimate's scores and the fine-tuned mean test (and validation) AUROC
   across cuts, and the test-AUROC gap between the estimate's pick and the best cut.

Results go to ``OUT/cut_choice.json`` (with every run's metrics) and ``OUT/cut_choice.md``; the runs stay in ``OUT``
(rerunning continues).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--data", default="breastmnist")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--levels", default="all", choices=("all", "block"),
                   help="fine-tune every cut, or the block-level cuts only (then the search is not run)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def medtl(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "medtl", *args], check=True, cwd=ROOT)


def main(argv: list[str]) -> None:
    args = parse(argv)
    sys.path.insert(0, str(ROOT))
    import csv

    import torch
    from scipy.stats import spearmanr

    from medtl.analysis.autocut import estimate_cut
    from medtl.resolve import load_data, model_weights, volume_of
    from medtl.backbones import backbone_cuts, create_backbone
    from medtl.compare.summary import COSTS, summarise
    from medtl.config import TrainConfig

    common = ["--backbone", args.backbone, "--data", args.data, "--image-size", str(args.image_size),
              "--epochs", str(args.epochs), "--patience", str(args.patience), "--seeds", args.seeds]
    cuts = [c for c in backbone_cuts(create_backbone(args.backbone, None)[0])
            if args.levels == "all" or c.level != "layer"]
    medtl("compare", *common, "--strategies", "truncated", "--cuts", ",".join(c.name for c in cuts),
          "--workers", str(args.workers), "--threads", "1", "--no-plots", "--out", str(args.out))
    searches = {}
    if args.levels == "all":
        for name, extra, stem in (("search", [], "search-two-stage"),
                                  ("search --cut auto", ["--cut", "auto"], "search-auto")):
            medtl("search", *common, *extra, "--out", str(args.out))
            for suffix in (".json", ".csv"):  # each search keeps its own files
                (args.out / f"search{suffix}").replace(args.out / f"{stem}{suffix}")
            searches[name] = json.loads((args.out / f"{stem}.json").read_text())

    cfg = TrainConfig(backbone=args.backbone, data=args.data, image_size=args.image_size).validate()
    data, weights = load_data(cfg), model_weights(cfg)
    volume = volume_of(cfg, data)  # volumes: the grid's 2D-to-3D conversion
    estimates = {}
    for threads in dict.fromkeys((1, torch.get_num_threads())):
        torch.set_num_threads(threads)
        estimates[threads] = estimate_cut(args.backbone, data, args.image_size, weights=weights, volume=volume,
                                          levels=tuple(dict.fromkeys(c.level for c in cuts)))  # the grid's cuts
    estimate = estimates[1]

    numbers = ("test_auroc", "test_auprc", "val_auroc", "val_auprc", "train_seconds", *COSTS)
    with open(args.out / "runs.csv") as f:
        records = [{**r, **{k: float(r[k]) for k in numbers}} for r in csv.DictReader(f)]
    rows = {r["cut"]: r for r in summarise(records, numbers[:5])}
    curve = [{**rows[c.name], "auto_score": next((s.score for s in estimate.scores if s.cut == c.name), None)}
             for c in cuts]
    scored = [r for r in curve if r["auto_score"] is not None]
    best = max(curve, key=lambda r: r["test_auroc_mean"])
    best_val = max(curve, key=lambda r: r["val_auroc_mean"])
    picked = next(r for r in curve if r["cut"] == estimate.pick)
    full = curve[-1]  # the last cut: the whole network fine-tuned
    summary = {
        "backbone": args.backbone, "data": args.data, "image_size": args.image_size, "seeds": args.seeds,
        "epochs": args.epochs, "patience": args.patience,
        "spearman_auto_vs_test_auroc": spearmanr([r["auto_score"] for r in scored],
                                                 [r["test_auroc_mean"] for r in scored]).statistic,
        "spearman_auto_vs_val_auroc": spearmanr([r["auto_score"] for r in scored],
                                                [r["val_auroc_mean"] for r in scored]).statistic,
        "best_test_cut": best["cut"], "best_test_auroc": best["test_auroc_mean"],
        "best_val_cut": best_val["cut"], "best_val_cut_test_auroc": best_val["test_auroc_mean"],
        "auto_pick": estimate.pick, "auto_best_score_cut": estimate.best,
        "auto_pick_test_auroc": picked["test_auroc_mean"],
        "auto_gap_to_best": best["test_auroc_mean"] - picked["test_auroc_mean"],
        "auto_seconds": {str(k): e.seconds for k, e in estimates.items()},
        "full_fine_tune_seconds": full["train_seconds_mean"],
        "auto_cost_fraction_of_full_fine_tune": estimate.seconds / full["train_seconds_mean"],
        "searches": {name: {"pick": s["pick"], "block_pick": s["block_pick"], **s["cost"],
                            "pick_test_auroc": next(r["test_auroc_mean"] for r in curve if r["cut"] == s["pick"])}
                     for name, s in searches.items()},
        "exhaustive_train_seconds": sum(r["train_seconds_mean"] * r["runs"] for r in curve),
        "curve": curve,
        # every run, so a benchmark can replay what a cheaper procedure would have seen (one seed, a shortlist)
        "runs": [{"cut": r["cut"], "repeat": int(r["repeat"]), "epochs_run": int(float(r["epochs_run"])),
                  **{k: r[k] for k in ("val_auroc", "val_auprc", "test_auroc", "test_auprc", "train_seconds")}}
                 for r in records],
    }
    (args.out / "cut_choice.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "cut_choice.md").write_text(markdown(summary))
    print(markdown(summary))


def markdown(s: dict) -> str:
    lines = [f"{s['backbone']} on {s['data']} at {s['image_size']} px, seeds {s['seeds']}, {s['epochs']} epochs "
             f"(patience {s['patience']}); mean ± std over seeds.", "",
             "| cut | level | params | auto score | val AUROC | test AUROC | test AUPRC | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in s["curve"]:
        mark = " **auto**" if r["cut"] == s["auto_pick"] else ""
        score = "" if r["auto_score"] is None else f"{r['auto_score']:.4f}"
        lines.append(f"| {r['cut']}{mark} | {r['level']} | {r['parameters']:,.0f} | {score} | "
                     f"{r['val_auroc_mean']:.3f} | {r['test_auroc_mean']:.3f} ± {r['test_auroc_std']:.3f} | "
                     f"{r['test_auprc_mean']:.3f} ± {r['test_auprc_std']:.3f} | {r['train_seconds_mean']:.0f} |")
    lines += ["", f"- Spearman rho, auto score vs mean test AUROC across cuts: {s['spearman_auto_vs_test_auroc']:.2f} "
              f"(vs validation AUROC: {s['spearman_auto_vs_val_auroc']:.2f})",
              f"- best cut on test: {s['best_test_cut']} ({s['best_test_auroc']:.3f}); best on validation: "
              f"{s['best_val_cut']} (test {s['best_val_cut_test_auroc']:.3f})",
              f"- auto pick: {s['auto_pick']} (highest score: {s['auto_best_score_cut']}), test AUROC "
              f"{s['auto_pick_test_auroc']:.3f}, gap to the best cut {s['auto_gap_to_best']:+.3f}",
              f"- auto cost: {', '.join(f'{v:.1f}s with {k} thread(s)' for k, v in s['auto_seconds'].items())}; "
              f"one full fine-tuning run (1 thread): {s['full_fine_tune_seconds']:.0f}s -> "
              f"{s['auto_cost_fraction_of_full_fine_tune']:.1%}",
              f"- exhaustive fine-tuning: {s['exhaustive_train_seconds']:.0f}s of training"]
    for name, c in s["searches"].items():
        lines.append(f"- `medtl {name}`: pick {c['pick']} (stage 1: {c['block_pick']}), test AUROC "
                     f"{c['pick_test_auroc']:.3f}; {c['runs']} runs, {c['train_seconds']:.0f}s of training "
                     f"({c['fraction_of_exhaustive_runs']:.0%} of the exhaustive runs)"
                     + (f" + {c['estimate_seconds']:.1f}s estimate" if "estimate_seconds" in c else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
