"""Every configuration tried toward a record, in one table, and the one validation chooses.

    python benchmarks/records.py runs/gpu/cxr-rec-* runs/gpu/cxr64-lr1e-3 --strategies truncated,full \
        --published "MedMNIST+ VGG16 E2E, 64 px:0.9869:0.8926" --out benchmarks/results/records-cxr64

Each FOLDER is a ``medtl compare`` output; a configuration is one folder x strategy x cut, summarised over its seeds
(mean ± std). The chosen configuration has the best mean validation AUPRC (ties: validation AUROC), the rule of every
medtl table; test metrics are printed but never used to choose. Where ``ens-<folder>`` lies beside a folder (``medtl
ensemble`` of that configuration's seeds), the ensemble is a configuration of its own, chosen the same way, on its
averaged validation probabilities. Writes ``<out>.md``, ``<out>.json`` (the summaries) and ``<out>-runs.csv`` (every
run, with its folder).
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

KEYS = ("test_auroc", "test_accuracy", "val_auprc", "val_auroc")
RUN_KEYS = ("run", "strategy", "cut", "repeat", "test_auroc", "test_auprc", "test_accuracy", "val_auroc", "val_auprc",
            "best_epoch", "epochs_run", "train_seconds", "parameters")


def read_runs(folder: Path, strategies: set[str] | None) -> list[dict]:
    """A compare folder's ``runs.csv`` rows (of ``strategies`` only, if given), tagged with the folder's name."""
    with open(folder / "runs.csv", newline="") as f:
        return [{"folder": folder.name, **{k: r[k] for k in RUN_KEYS}} for r in csv.DictReader(f)
                if strategies is None or r["strategy"] in strategies]


def configurations(folder: Path, runs: list[dict]) -> list[dict]:
    """One row per strategy x cut of a compare folder's runs, over their seeds."""
    rows = []
    for key in dict.fromkeys((r["strategy"], r["cut"]) for r in runs):
        own = [r for r in runs if (r["strategy"], r["cut"]) == key]
        row = {"configuration": f"{folder.name}: {key[0]}" + (f" {key[1]}" if key[1] else ""), "seeds": len(own),
               "parameters": int(float(own[0]["parameters"]))}
        for k in KEYS:
            values = [float(r[k]) for r in own]
            row[k], row[f"{k}_std"] = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        row["per_seed_test_auroc"] = [round(float(r["test_auroc"]), 4) for r in own]
        rows.append(row)
    return rows


def ensemble(folder: Path) -> dict | None:
    metrics = folder.parent / f"ens-{folder.name}" / "metrics.json"
    if not metrics.exists():
        return None
    m = json.loads(metrics.read_text())
    return {"configuration": f"ensemble of {folder.name}'s {m['members']} seeds", "seeds": m["members"],
            "parameters": m["parameters"], **{k: m[k] for k in KEYS}, **{f"{k}_std": 0.0 for k in KEYS}}


def chosen(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["val_auprc"], r["val_auroc"]))


def cell(row: dict, k: str) -> str:
    """Test metrics to 3 decimals; validation ones to 4, so that the choice between close configurations shows."""
    digits = 4 if k.startswith("val_") else 3
    return f"{row[k]:.{digits}f} ± {row[f'{k}_std']:.{digits}f}" if row["seeds"] > 1 and not row[
        "configuration"].startswith("ensemble") else f"{row[k]:.{digits}f}"


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--strategies", help="only these strategies of the folders (comma-separated)")
    p.add_argument("--published", action="append", default=[], help="NAME:AUROC:ACCURACY, a row to compare with")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    keep = set(args.strategies.split(",")) if args.strategies else None
    runs = {f: read_runs(f, keep) for f in args.folders}
    singles = [row for f in args.folders for row in configurations(f, runs[f])]
    ensembles = [e for e in (ensemble(f) for f in args.folders) if e]
    best, best_ensemble = chosen(singles), chosen(ensembles) if ensembles else None
    lines = [f"{len(singles)} configurations of single models and {len(ensembles)} ensemble(s) tried; chosen: the best "
             "mean validation AUPRC of each kind (test never used to choose).", "",
             "| configuration | seeds | test AUROC | test accuracy | val AUPRC | val AUROC | parameters | per seed |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(singles, key=lambda r: -r["val_auprc"]) + sorted(ensembles, key=lambda r: -r["val_auprc"]):
        mark = "**" if row is best or row is best_ensemble else ""
        lines.append(f"| {mark}{row['configuration']}{' (chosen)' if mark else ''}{mark} | {row['seeds']} | "
                     + " | ".join(cell(row, k) for k in KEYS)
                     + f" | {row['parameters']:,} | {', '.join(map(str, row.get('per_seed_test_auroc', [])))} |")
    for spec in args.published:
        name, auroc, accuracy = spec.rsplit(":", 2)
        lines.append(f"| *published: {name}* | | *{float(auroc):.3f}* | *{float(accuracy):.3f}* | | | | |")
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    with open(f"{args.out}-runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["folder", *RUN_KEYS])
        w.writeheader()
        w.writerows(r for folder in args.folders for r in runs[folder])
    Path(f"{args.out}.json").write_text(json.dumps({"configurations": singles, "ensembles": ensembles,
                                                    "chosen": best, "chosen_ensemble": best_ensemble}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
