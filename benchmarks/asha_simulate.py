"""Successive halving replayed on an exhaustive grid's per-epoch validation curves, instead of training again:

    python -m medtl compare --strategies truncated --cuts <every cut> --seeds 0,1,2 ... --out runs/cut-choice-64
    python benchmarks/asha_simulate.py runs/cut-choice-64 --out benchmarks/results/asha-simulated-64

Every run of the grid recorded its validation metrics after each epoch (``history.csv``) and its epoch seconds; a
run stopped at a rung would have recorded the same first epochs (seeded CPU training; pausing and resuming is
exact, ``tests/test_halving.py``). So the rule of :class:`medtl.compare.halving.Halving` is applied rung by rung to
the recorded scores, the pick is the best on validation of the cuts that reach the end, its test AUROC is the grid's,
and the cost is the seconds of the epochs the rule would have trained, over the grid's total. Each setting of
``--settings GRACE:ETA:NOISE,...`` is replayed (NOISE 0: ASHA as published). Caveat: a run that stopped early on its
patience is stopped at the same epoch in the replay, as it would be.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def read(directory: Path) -> dict[str, list[dict]]:
    """Per cut, its finished runs: ``{"history": [...], "metrics": {...}}``."""
    runs: dict[str, list[dict]] = {}
    for run in sorted((directory / "runs").iterdir()):
        metrics_file = run / "metrics.json"
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        with open(run / "history.csv", newline="") as f:
            history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        runs.setdefault(metrics["cut"], []).append({"history": history, "metrics": metrics})
    return runs


def replay(runs: dict[str, list[dict]], order: list[str], epochs: int, grace: int, eta: int, noise: float,
           select: str, error) -> dict:
    from medtl.compare.halving import Halving

    plan = Halving(epochs, grace, eta, noise)

    def score(cut: str, m: int) -> float:
        return float(np.mean([max(r[f"val_{select}"] for r in run["history"] if r["epoch"] <= m)
                              for run in runs[cut]]))

    alive, stopped = list(order), {}
    for m in plan.milestones:
        keep = plan.survivors({c: score(c, m) for c in alive}, error)
        stopped.update({c: m for c in alive if c not in keep})
        alive = keep
    seconds = sum(r["seconds"] for c in order for run in runs[c] for r in run["history"]
                  if r["epoch"] <= stopped.get(c, epochs))
    total = sum(r["seconds"] for c in order for run in runs[c] for r in run["history"])
    final = {c: score(c, epochs) for c in alive}
    pick = max(alive, key=lambda c: final[c])
    test = {c: float(np.mean([run["metrics"]["test_auroc"] for run in runs[c]])) for c in order}
    best = max(order, key=test.get)
    return {"grace": grace, "eta": eta, "noise": noise, "milestones": plan.milestones, "pick": pick,
            "pick_test_auroc": test[pick], "best_cut": best, "best_test_auroc": test[best],
            "gap": test[best] - test[pick], "finished": alive, "stopped_at": stopped,
            "seconds": seconds, "exhaustive_seconds": total, "time_share": seconds / total}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", type=Path, help="the output directory of the exhaustive `medtl compare`")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--select", default="auprc", choices=("auroc", "auprc"))
    p.add_argument("--settings", default="3:2:0,3:2:1,3:3:0,3:3:1,2:3:1,3:4:1")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from medtl.backbones import backbone_cuts, create_backbone
    from medtl.config import TrainConfig
    from medtl.evaluation.noise import noise_of
    from medtl.resolve import load_data

    runs = read(args.grid)
    some = next(iter(runs.values()))[0]["metrics"]
    order = [c.name for c in backbone_cuts(create_backbone(some["backbone"], None)[0]) if c.name in runs]
    seeds = {len(v) for v in runs.values()}
    cfg = TrainConfig(backbone=some["backbone"], data=some["data"]).validate()
    data = load_data(cfg)
    error = noise_of(args.select, data.val.labels.numpy(), data.task)
    results = []
    for setting in args.settings.split(","):
        grace, eta, noise = setting.split(":")
        results.append(replay(runs, order, args.epochs, int(grace), int(eta), float(noise), args.select, error))
    summary = {"grid": args.grid.name, "cuts": order, "runs_per_cut": sorted(seeds), "select": args.select,
               "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"Successive halving replayed on {args.grid.name} ({len(order)} cuts, {sorted(seeds)} run(s) per cut, "
             f"validation {args.select.upper()}):", "",
             "| grace | eta | noise band (SE) | rungs | pick | its test AUROC | gap to best | time share |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['grace']} | {r['eta']} | {r['noise']:g} | {r['milestones']} | {r['pick']} | "
                     f"{r['pick_test_auroc']:.3f} | {r['gap']:+.3f} | {r['time_share']:.0%} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
