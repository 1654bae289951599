"""What ``--tta hflip`` does to test metrics: ``python benchmarks/tta.py RUN [RUN ...]`` (e.g. ``medtl train --seed S``
for S = 0, 1, 2) evaluates each run's test split without and with the horizontal-flip average and prints a table."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import medtl  # noqa: E402

KEYS = ("auroc", "auprc", "accuracy")


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main(runs: list[str]) -> None:
    rows = []
    for run in runs:
        plain, tta = medtl.evaluate(run), medtl.evaluate(run, tta="hflip")
        rows.append({k: (plain[k], tta[k]) for k in KEYS})
        print(f"{Path(run).name}: " + "  ".join(f"{k} {a:.4f} -> {b:.4f}" for k, (a, b) in rows[-1].items()))
    print("| metric | no TTA | hflip TTA | difference (per run) |\n|---|---|---|---|")
    for k in KEYS:
        a, b = [r[k][0] for r in rows], [r[k][1] for r in rows]
        print(f"| test {k} | {spread(a)} | {spread(b)} | {', '.join(f'{y - x:+.4f}' for x, y in zip(a, b))} |")


if __name__ == "__main__":
    main(sys.argv[1:])
