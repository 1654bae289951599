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

Shortlists (``--shortlist 2,3``): ``medtl search --cut auto --shortlist K`` fine-tunes a one-pass estimator's K
best-ranked cuts and keeps the best on validation (``--select``, the search's default AUPRC; the ridge probe ranks by
the same metric there, as in the search). It is replayed on the
grid's own runs, once per seed (one run per shortlisted cut, picked on that run's validation metric); its gap is the
mean over those replays of the pick's gap (seed-mean test AUROC, as for the estimators), and its cost the estimator's
plus the shortlisted runs' recorded seconds, over one full fine-tune. A curve file without per-run records (older
``cut_choice.py``) is replayed on seed means instead, and says so. Curves already in ``OUT.json`` keep their measured
estimators (rerunning continues; ``--fresh`` measures again); shortlists are always replayed again.
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
    p.add_argument("--multiexit-epochs", type=int, help="default: as medtl runs it, a third of the curve's epochs, "
                   "at least 3")
    p.add_argument("--shortlist", default="2,3", help="shortlist sizes K to replay ('' for none)")
    p.add_argument("--select", default="auprc", choices=("auroc", "auprc"), help="the shortlist's validation metric")
    p.add_argument("--fresh", action="store_true", help="measure the estimators again for curves already in OUT")
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
        key = f"{Path(choice['data']).stem}-{choice['image_size']}"
        curve = {r["cut"]: r for r in choice["curve"]}
        best_cut = max(curve, key=lambda c: curve[c]["test_auroc_mean"])
        full = choice["full_fine_tune_seconds"]
        full_epochs = curve[list(curve)[-1]].get("epochs_run_mean", choice["epochs"])
        sizes = [int(k) for k in args.shortlist.split(",") if k]
        levels = tuple(dict.fromkeys(r["level"] for r in choice["curve"]))  # the curve's cuts only

        def features() -> tuple[list, list, np.ndarray, float]:
            """The curve's cuts, their pooled pretrained features, the labels, and the seconds it took."""
            start = time.perf_counter()
            y = np.concatenate([data.train.labels.numpy(), data.val.labels.numpy()])
            index = sample(y, MAX_IMAGES, data.task)
            cuts, pooled = pooled_features(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg),
                                           index=index, volume=volume, levels=levels)
            return cuts, pooled, (y if index is None else y[index]), time.perf_counter() - start

        def rank_as_search(row: dict, cuts: list, pooled: list, y: np.ndarray) -> None:
            """The search ranks by its --select-by metric; of the estimators only ridge's score depends on it."""
            if row["estimator"] == "ridge" and args.select != "auroc":
                scores = score_cuts(cuts, pooled, y, data.task, args.select, "ridge")[0]
                row[f"scores_{args.select}"] = {s.cut: s.score for s in scores}

        if key in report and not args.fresh and {r["estimator"] for r in report[key]["rows"]} >= set(names):
            rows = [r for r in report[key]["rows"] if r["estimator"] in names]
            missing = [r for r in rows if r["estimator"] == "ridge" and f"scores_{args.select}" not in r]
            if missing and args.select != "auroc":
                cuts, pooled, y, _ = features()
                for row in missing:
                    rank_as_search(row, cuts, pooled, y)
            report[key]["shortlists"] = shortlists(choice, rows, sizes, args.select)
            report[key]["exhaustive"] = exhaustive(choice, args.select)
            report[key]["select"] = args.select
            report[key]["curve"] = path.name
            continue
        multiexit_epochs = args.multiexit_epochs or max(3, choice["epochs"] // 3)
        cuts, pooled, y, feature_seconds = features()
        rows, slowdown = [], None
        for name in names:
            start = time.perf_counter()
            if name == "multiexit":
                est = estimate_cut(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg), volume=volume,
                                   estimator="multiexit", epochs=multiexit_epochs, levels=levels)
                scores, pick, seconds = est.scores, est.pick, est.seconds
            else:
                scores, _, _, pick = score_cuts(cuts, pooled, y, data.task, "auroc", name)
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
                row["epochs"] = multiexit_epochs
                row["cost_epochs_share_of_full_fine_tune"] = multiexit_epochs / full_epochs
            rank_as_search(row, cuts, pooled, y)
            rows.append(row)
            print(f"{path.name} {name}: pick {pick} gap {row['gap']:+.3f} tau_w {row['tau_w_test']:.2f} "
                  f"{seconds:.1f}s", flush=True)
        for row in rows:
            row["slowdown_now"] = slowdown
            row["cost_share_of_full_fine_tune"] = row["seconds_now"] / slowdown / full if slowdown else None
        report[key] = {
            "curve": str(path.name), "best_cut": best_cut, "best_test_auroc": curve[best_cut]["test_auroc_mean"],
            "full_fine_tune_seconds_recorded": full, "full_fine_tune_epochs": full_epochs, "seeds": choice["seeds"],
            "images_scored": len(y), "rows": rows,
            "shortlists": shortlists(choice, rows, sizes, args.select), "exhaustive": exhaustive(choice, args.select),
            "select": args.select}
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def exhaustive(choice: dict, select: str) -> dict:
    """The reference no cheaper procedure can be expected to beat: every cut fine-tuned (all seeds), the best mean
    validation metric kept. Its gap is the validation split's own error in choosing the cut."""
    curve = choice["curve"]
    pick = max(curve, key=lambda r: r[f"val_{select}_mean"])
    return {"pick": pick["cut"], "gap": max(r["test_auroc_mean"] for r in curve) - pick["test_auroc_mean"],
            "cost_share_of_full_fine_tune": choice["exhaustive_train_seconds"] / choice["full_fine_tune_seconds"]}


def shortlists(choice: dict, rows: list[dict], sizes: list[int], select: str) -> list[dict]:
    """``medtl search --cut auto --shortlist K`` replayed on the grid's runs, per one-pass estimator and K."""
    curve = {r["cut"]: r for r in choice["curve"]}
    best = max(r["test_auroc_mean"] for r in curve.values())
    full = choice["full_fine_tune_seconds"]
    replays: dict = {}  # seed (None: seed means) -> cut -> that run's validation metric and seconds
    for run in choice.get("runs") or []:
        replays.setdefault(run["repeat"], {})[run["cut"]] = run
    if not replays:
        replays[None] = {c: {f"val_{select}": r[f"val_{select}_mean"], "train_seconds": r["train_seconds_mean"]}
                         for c, r in curve.items()}
    out = []
    for row in rows:
        if row["estimator"] == "multiexit":  # already near a fine-tune's cost before any shortlisted run
            continue
        by = row.get(f"scores_{select}", row["scores"])  # ridge: scored with the search's metric
        ranked = sorted(by, key=lambda c: -by[c])  # ties: the shallower first (as the search)
        estimate = row["cost_share_of_full_fine_tune"] or row["seconds_now"] / full
        for k in sizes:
            chosen = [c for c in curve if c in ranked[:k]]  # network order, as the search trains and ties them
            picks = {seed: max(chosen, key=lambda c: by_cut[c][f"val_{select}"]) for seed, by_cut in replays.items()}
            gaps = [best - curve[p]["test_auroc_mean"] for p in picks.values()]
            costs = [estimate + sum(by_cut[c]["train_seconds"] for c in chosen) / full for by_cut in replays.values()]
            out.append({"estimator": row["estimator"], "k": k, "shortlist": chosen,
                        "picks": {str(seed): p for seed, p in picks.items()}, "gap": float(np.mean(gaps)),
                        "gap_worst_replay": max(gaps), "cost_share_of_full_fine_tune": float(np.mean(costs)),
                        "replayed_on": "seed means" if None in replays else f"{len(replays)} seeds, one run each"})
    return out


def markdown(report: dict) -> str:
    lines = [*summary(report), "", "Per curve and estimator:", "",
             "| data | estimator | weighted τ vs test AUROC | vs val AUROC | pick | its test AUROC | gap to best | "
             "cost (share of one fine-tune, load-corrected) |", "|---|---|---|---|---|---|---|---|"]
    for key, r in report.items():
        for row in r["rows"]:
            cost = row["cost_share_of_full_fine_tune"]
            extra = (f"; {row['epochs']} of {r['full_fine_tune_epochs']:.0f} full-network epochs"
                     if row["estimator"] == "multiexit" else "")
            lines.append(f"| {key} | {row['estimator']} | {row['tau_w_test']:.2f} | {row['tau_w_val']:.2f} | "
                         f"{row['pick']} | {row['pick_test_auroc']:.3f} | {row['gap']:+.3f} | "
                         f"{'' if cost is None else f'{cost:.1%}'}{extra} |")
    lines += ["", "Shortlists: the estimator's K best-ranked cuts fine-tuned, the best on validation kept "
              "(`medtl search --cut auto --shortlist K`), replayed on the grid's runs.", "",
              "| data | estimator | K | shortlist | picks (per replay) | gap to best (mean; worst replay) | "
              "cost (share of one fine-tune) | replayed on |", "|---|---|---|---|---|---|---|---|"]
    for key, r in report.items():
        for row in r.get("shortlists", []):
            picks = ", ".join(dict.fromkeys(row["picks"].values()))
            lines.append(f"| {key} | {row['estimator']} | {row['k']} | {', '.join(row['shortlist'])} | {picks} | "
                         f"{row['gap']:+.3f}; {row['gap_worst_replay']:+.3f} | "
                         f"{row['cost_share_of_full_fine_tune']:.0%} | {row['replayed_on']} |")
    return "\n".join(lines) + "\n"


def configurations(report: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """Every configuration tried (estimator, or estimator + shortlist K) -> curve -> (gap, cost share)."""
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for key, r in report.items():
        for row in r["rows"]:
            cost = row["cost_share_of_full_fine_tune"] or row["seconds_now"] / r["full_fine_tune_seconds_recorded"]
            table.setdefault(row["estimator"], {})[key] = (row["gap"], cost)
        for row in r.get("shortlists", []):
            name = f"{row['estimator']} + shortlist {row['k']}"
            table.setdefault(name, {})[key] = (row["gap"], row["cost_share_of_full_fine_tune"])
    return table


def summary(report: dict) -> list[str]:
    """Across curves: each configuration's worst gap and its largest cost, the worst gap first."""
    table = configurations(report)
    keys = list(report)
    lines = [f"Across the {len(keys)} curves ({len(table)} configurations; a configuration missing a curve is "
             "left out of the ranking):", "",
             "| configuration | " + " | ".join(f"gap {k}" for k in keys) + " | worst gap | largest cost |",
             "|---|" + "---|" * (len(keys) + 2)]
    complete = {name: rows for name, rows in table.items() if set(rows) == set(keys)}
    if all("exhaustive" in report[k] for k in keys):
        ref = [report[k]["exhaustive"] for k in keys]
        lines.append("| *reference: every cut fine-tuned (all seeds), best mean validation "
                     f"{report[keys[0]]['select'].upper()}* | " + " | ".join(f"{r['gap']:+.3f}" for r in ref)
                     + f" | {max(r['gap'] for r in ref):+.3f} | "
                     f"{max(r['cost_share_of_full_fine_tune'] for r in ref):.0%} |")
    for name, rows in sorted(complete.items(), key=lambda item: (max(g for g, _ in item[1].values()),
                                                                  max(c for _, c in item[1].values()))):
        lines.append(f"| {name} | " + " | ".join(f"{rows[k][0]:+.3f}" for k in keys)
                     + f" | {max(g for g, _ in rows.values()):+.3f} | {max(c for _, c in rows.values()):.0%} |")
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
