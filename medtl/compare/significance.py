"""Is a row of the comparison table really different from full fine-tuning? Paired DeLong tests on the test images.

Every configuration of the grid is scored on the same test images as FTL (``full``) in the same repeat (same seed,
or same resplit), so the AUROCs are correlated and the paired DeLong test (:mod:`medtl.evaluation.delong`) applies
to each repeat. The repeats are combined by averaging their z statistics and referring the mean to N(0, 1):

    z = mean over repeats r of z_r,    p = 2 · (1 − Φ(|z|)).

Why this rule: the repeats share their test images (seeds) or most of them (resplits), so their z_r are positively
correlated. Fisher's and Stouffer's combinations assume independent p-values and would count the same images'
evidence once per seed. The variance of a mean of unit-variance statistics is at most 1 whatever their correlation,
so this p-value stays valid (conservative when the repeats are nearly independent, exact when they agree
perfectly); it also works for resplits, where seed-averaging the probabilities would be impossible (the repeats have
different test images).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import norm

from ..artifacts import write_csv
from ..evaluation.delong import delong_test
from ..rundir import RunDir

REFERENCE = "full"
TRUNCATED = "truncated"  # the second reference: is a method better than truncation itself?
SIGNIFICANCE = "significance.csv"
SIGNIFICANCE_TTL = "significance_vs_truncated.csv"


def run_task(run_dir: Path) -> str:
    return json.loads((run_dir / RunDir.MODEL).read_text())["task"]


def read_predictions(run_dir: Path, split: str = "test") -> tuple[np.ndarray, np.ndarray, str]:
    """Labels (N,), the model's own class probabilities (N, C) and the task of a run's ``predictions_<split>.csv``."""
    path = run_dir / f"predictions_{split}.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "label" not in rows[0]:
        raise ValueError(f"{path} has no 'label' column (multi-label runs have no single AUROC to test)")
    columns = [c for c in rows[0] if c.startswith("prob_")]
    labels = np.array([int(r["label"]) for r in rows])
    return labels, np.array([[float(r[c]) for c in columns] for r in rows]), run_task(run_dir)


def paired_tests(table: list[dict], records: list[dict], runs_dir: Path, reference: str = REFERENCE,
                 reference_cut: str | None = None) -> list[dict]:
    """One row per (table row, repeat) with DeLong's test of its AUROC against ``reference`` (at ``reference_cut``,
    when the reference has a cut axis) in that repeat, and one per table row with ``repeat`` = ``"combined"`` (mean z,
    see the module docstring). Empty when the grid has no ``reference`` runs or the task is multi-label."""
    ref_runs = {r["repeat"]: r["run"] for r in records if r["strategy"] == reference
                and (reference_cut is None or r["cut"] == reference_cut)}
    if not ref_runs or run_task(runs_dir / next(iter(ref_runs.values()))) == "multilabel":
        return []
    tests = []
    for row in table:
        if row["strategy"] == reference:
            continue
        per_repeat = []
        for rec in (r for r in records if (r["strategy"], r["cut"]) == (row["strategy"], row["cut"])):
            if rec["repeat"] not in ref_runs:
                continue
            labels, prob, task = read_predictions(runs_dir / rec["run"])
            ref_labels, ref_prob, _ = read_predictions(runs_dir / ref_runs[rec["repeat"]])
            if not np.array_equal(labels, ref_labels):
                raise ValueError(f"{rec['run']} and {ref_runs[rec['repeat']]} were not tested on the same images "
                                 "(their labels differ), so they cannot be compared pairwise")
            result = delong_test(labels, prob, ref_prob, task)
            per_repeat.append({"method": row["method"], "repeat": rec["repeat"], "auroc": result.auroc_a,
                               f"auroc_{reference}": result.auroc_b, "difference": result.difference,
                               "se": result.se, "z": result.z, "p": result.p})
        if per_repeat:
            z = float(np.mean([t["z"] for t in per_repeat]))
            tests += per_repeat + [{
                "method": row["method"], "repeat": "combined",
                "auroc": float(np.mean([t["auroc"] for t in per_repeat])),
                f"auroc_{reference}": float(np.mean([t[f"auroc_{reference}"] for t in per_repeat])),
                "difference": float(np.mean([t["difference"] for t in per_repeat])), "se": None, "z": z,
                "p": float(2 * norm.sf(abs(z)))}]
    return tests


def add_p_values(table: list[dict], records: list[dict], out: Path, reference: str = REFERENCE) -> list[dict]:
    """The table with ``p_vs_full`` (the combined DeLong p-value against ``reference``; None on its own row) on
    every row, and every per-repeat test in ``out/significance.csv``; the table unchanged when there is nothing to
    test against. When the table has a TruncatedTL row, ``p_vs_truncated`` likewise tests every other row against
    its first one (TTL-1, chosen on validation), per repeat in ``out/significance_vs_truncated.csv``."""
    tests = paired_tests(table, records, Path(out) / "runs", reference)
    if tests:
        write_csv(Path(out) / SIGNIFICANCE, tests)
        combined = {t["method"]: t["p"] for t in tests if t["repeat"] == "combined"}
        table = [{**row, f"p_vs_{reference}": combined.get(row["method"])} for row in table]
    ttl = next((r for r in table if r["strategy"] == TRUNCATED), None)
    versus = paired_tests(table, records, Path(out) / "runs", TRUNCATED, ttl["cut"]) if ttl else []
    if versus:
        write_csv(Path(out) / SIGNIFICANCE_TTL, versus)
        combined = {t["method"]: t["p"] for t in versus if t["repeat"] == "combined"}
        table = [{**row, "p_vs_truncated": combined.get(row["method"])} for row in table]
    return table
