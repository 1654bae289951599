"""``medtl compare``: every transfer strategy on the same data, in one resumable grid, summarised as the paper's
table (mean ± std, parameters, MACs, CPU latency) with figures against the cut point."""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from ..api import train
from ..artifacts import atomic_write, load_model, write_csv, write_json
from ..config import TrainConfig
from ..evaluation import latency_ms
from ..training import CHECKPOINT
from .grid import GridRun, build_grid, cut_points
from .significance import add_p_values
from .summary import best_on_validation, markdown, paper_rows, summarise

LATENCY = "latency.json"
__all__ = ["CompareResult", "GridRun", "best_on_validation", "build_grid", "compare", "cut_points", "estimate_axis",
           "fit_run", "markdown", "paper_rows", "summarise"]


@dataclass
class CompareResult:
    """Per-configuration rows, the paper's rows, per-run records and the files written."""

    rows: list[dict]
    table: list[dict]
    records: list[dict]
    files: list[Path]


def compare(base: TrainConfig, strategies: list[str], *, cuts: str | list[str] = "block",
            seeds: list[int] = (0, 1, 2), resplits: int | None = None, out: str | Path = "runs/compare",
            select: str = "auprc", plots: bool = True, workers: int = 1, verbose: bool = False) -> CompareResult:
    """Train the grid ``strategies`` × cut points × repeats (finished runs are skipped, interrupted ones resumed),
    ``workers`` runs at a time, and write ``configurations.{md,csv}``, ``table.{md,csv}``, ``runs.csv`` and the
    figures to ``out``."""
    out = Path(out)
    if cuts == "auto" or base.cut == "auto":
        cuts, base = [estimate_axis(base, out, select)], replace(base, cut=None)
    if workers > 1 and base.threads is None:  # share the cores instead of every run taking all of them
        base = replace(base, threads=max(1, (os.cpu_count() or 1) // workers))
    runs = build_grid(base.validate(), strategies, cuts, list(seeds), resplits, out)
    todo = [r for r in runs if not r.finished]
    print(f"compare: {len(runs)} runs in {out}, {len(runs) - len(todo)} already finished", flush=True)
    train_all(todo, workers, verbose)
    records = [record(run) for run in runs]
    rows = summarise(records)
    table = add_p_values(paper_rows(rows, select), records, out)
    files = write_reports(base, rows, table, records, out, select)
    if plots:
        from .plots import plot_boxes, plot_cuts

        order = [c for c, _ in cut_points(base.backbone, "all")]
        files += [plot_cuts(rows, order, out / "cuts.png"), plot_boxes(table, records, out / "boxes.png")]
    print(markdown(table, "method", select), flush=True)
    return CompareResult(rows, table, records, files)


def estimate_axis(base: TrainConfig, out: Path, select: str) -> str:
    """``--cuts auto`` (or ``--cut auto``): the cut axis is the one-pass estimate's pick, made once for the whole
    grid on its data (``out/autocut.json``), so TTL, LWFT and TF meet at the same point and every strategy without a
    cut axis runs as usual."""
    from ..analysis.autocut import estimate_for

    estimate = estimate_for(base, select)
    print(estimate.table(), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "autocut.json", estimate.to_dict())
    return estimate.pick


def fit_run(run: GridRun, verbose: bool = False) -> bool:
    """Train one run of the grid: resumed from its checkpoint if it was interrupted (then True), else from the
    start."""
    resumed = (run.run_dir / CHECKPOINT).is_file()
    if resumed:
        train(resume=run.run_dir, verbose=verbose)
    else:
        train(run.config, run_dir=run.run_dir, verbose=verbose)
    return resumed


def train_run(run: GridRun, verbose: bool = False) -> str:
    """:func:`fit_run`, then the run's CPU latency; returns a progress line."""
    began = time.perf_counter()
    resumed = fit_run(run, verbose)
    measure_latency(run.run_dir)
    return f"{run.run_dir.name}{' (resumed)' if resumed else ''}: {time.perf_counter() - began:.0f}s"


def train_all(todo: list[GridRun], workers: int, verbose: bool) -> None:
    """Train ``todo`` in this process, or in ``workers`` processes at once."""
    start = time.perf_counter()

    def report(i: int, line: str) -> None:
        print(f"[{i}/{len(todo)}] {line}, {time.perf_counter() - start:.0f}s elapsed", flush=True)

    if workers <= 1:
        for i, run in enumerate(todo, 1):
            report(i, train_run(run, verbose))
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for i, done in enumerate(as_completed([pool.submit(train_run, run, verbose) for run in todo]), 1):
            report(i, done.result())


def measure_latency(run_dir: Path) -> None:
    """CPU inference latency of the run's saved model (batch 1, warm-up, median), into ``latency.json``."""
    model = load_model(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: comparable between runs, and robust on a shared machine
    try:
        ms = latency_ms(model, model.spec.in_chans, model.spec.image_size, warmup=10, repeats=50)
    finally:
        torch.set_num_threads(threads)
    write_json(run_dir / LATENCY, {"latency_ms": ms, "batch_size": 1, "threads": 1})


def record(run: GridRun) -> dict:
    """A finished run's metrics with its place in the grid and its measured CPU latency."""
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    if not (run.run_dir / LATENCY).is_file():  # finished before its latency was measured
        measure_latency(run.run_dir)
    return {**metrics, "model_cut": metrics["cut"], "strategy": run.strategy, "cut": run.cut, "level": run.level,
            "repeat": run.repeat, "run": run.run_dir.name, **json.loads((run.run_dir / LATENCY).read_text())}


def write_reports(base: TrainConfig, rows: list[dict], table: list[dict], records: list[dict], out: Path,
                  select: str) -> list[Path]:
    keys = ("run", "strategy", "cut", "level", "repeat", "test_auroc", "test_auprc", "test_accuracy", "val_auroc",
            "val_auprc", "best_epoch", "epochs_run", "train_seconds", "parameters", "trainable_parameters", "macs",
            "latency_ms")
    write_csv(out / "runs.csv", [{k: r[k] for k in keys} for r in records])
    write_csv(out / "configurations.csv", rows)
    write_csv(out / "table.csv", table)
    repeats = max(r["runs"] for r in rows)
    header = (f"# {base.data}, {base.backbone} ({base.weights} weights), {base.image_size} px, {repeats} repeat(s)\n\n"
              f"Mean ± std over the repeats. -1: best block-level configuration, -2: best over every cut, both "
              f"chosen on mean validation {select.upper()} only. P: parameters; T: CPU latency per image "
              f"(batch 1, median).\n\n")
    atomic_write(out / "table.md", header + markdown(table, "method", select))
    atomic_write(out / "configurations.md", header + markdown(rows, "strategy", select))
    return [out / n for n in ("runs.csv", "configurations.csv", "table.csv", "table.md", "configurations.md")]
