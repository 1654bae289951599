"""``medtl compare``: every transfer strategy on the same data, in one resumable grid, summarised as the paper's
table (mean ± std, parameters, MACs, CPU latency) with figures against the cut point."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from ..analysis.autocut import estimate_for
from ..artifacts import atomic_write, write_csv, write_json
from ..config import TrainConfig
from ..rundir import GridDir, make_dir
from ..tracking import close_grid, open_grid
from .grid import GridRun, build_grid, cut_points
from .plots import plot_boxes, plot_cuts
from .runner import Executor, LocalExecutor, fit_run, record, run_grid
from .significance import add_p_values
from .summary import best_on_validation, markdown, paper_rows, summarise

log = logging.getLogger("medtl")
__all__ = ["CompareResult", "Executor", "GridRun", "LocalExecutor", "best_on_validation", "build_grid", "compare",
           "cut_points", "estimate_axis", "fit_run", "markdown", "paper_rows", "record", "run_grid", "summarise"]


@dataclass
class CompareResult:
    """Per-configuration rows, the paper's rows, per-run records and the files written."""

    rows: list[dict]
    table: list[dict]
    records: list[dict]
    files: list[Path]


def compare(base: TrainConfig, strategies: list[str], *, cuts: str | list[str] = "block",
            seeds: list[int] = (0, 1, 2), resplits: int | None = None, out: str | Path = "runs/compare",
            select: str = "auprc", plots: bool = True, workers: int = 1, verbose: bool = False,
            executor: Executor | None = None) -> CompareResult:
    """Train the grid ``strategies`` × cut points × repeats (finished runs are skipped, interrupted ones resumed)
    through ``executor`` (default: ``workers`` local processes at a time), and write ``configurations.{md,csv}``,
    ``table.{md,csv}``, ``runs.csv`` and the
    figures to ``out``."""
    out = make_dir(out)
    if cuts == "auto" or base.cut == "auto":
        cuts, base = [estimate_axis(base, out, select)], replace(base, cut=None)
    executor = executor or LocalExecutor(workers)
    if base.threads is None and executor.threads:  # share the cores instead of every run taking all of them
        base = replace(base, threads=executor.threads)
    base = open_grid(base, out, "compare")  # --track: a parent run with the grid's runs nested
    runs = build_grid(base.validate(), strategies, cuts, list(seeds), resplits, out)
    log.info("compare: %s", out)
    records = run_grid(runs, executor, verbose)
    rows = summarise(records)
    table = add_p_values(paper_rows(rows, select), records, out)
    files = write_reports(base, rows, table, records, out, select)
    if plots:
        order = [c for c, _ in cut_points(base.backbone, "all")]
        files += [plot_cuts(rows, order, out / "cuts.png"), plot_boxes(table, records, out / "boxes.png")]
    close_grid(base, out, files)
    log.info(markdown(table, "method", select))
    return CompareResult(rows, table, records, files)


def estimate_axis(base: TrainConfig, out: Path, select: str) -> str:
    """``--cuts auto``: the cut axis is the one-pass estimate's pick, made once for the whole
    grid on its data (``out/autocut.json``), so TTL, LWFT and TF meet at the same point and every strategy without a
    cut axis runs as usual."""
    estimate = estimate_for(base, select)
    log.info(estimate.table())
    write_json(out / "autocut.json", estimate.to_dict())
    return estimate.pick


def write_reports(base: TrainConfig, rows: list[dict], table: list[dict], records: list[dict], out: Path,
                  select: str) -> list[Path]:
    keys = ("run", "strategy", "cut", "level", "repeat", "test_auroc", "test_auprc", "test_accuracy", "val_auroc",
            "val_auprc", "best_epoch", "epochs_run", "train_seconds", "parameters", "trainable_parameters", "macs",
            "stored_bytes", "latency_ms")
    write_csv(out / GridDir.RUNS, [{k: r.get(k) for k in keys} for r in records])  # stored_bytes: None in old runs
    write_csv(out / GridDir.CONFIGURATIONS, rows)
    write_csv(out / GridDir.TABLE, table)
    repeats = max(r["runs"] for r in rows)
    header = (f"# {base.data}, {base.backbone} ({base.weights} weights), {base.image_size or 'default'} px, "
              f"{repeats} repeat(s)\n\n"
              f"Mean ± std over the repeats. -1: best block-level configuration, -2: best over every cut, both "
              f"chosen on mean validation {select.upper()} only. P: parameters; stored/task: what a task stores "
              f"beyond the shared pretrained weights (trainable tensors and the statistics that follow the data, "
              f"float32); T: CPU latency per image (batch 1, median).\n\n")
    atomic_write(out / GridDir.TABLE_MD, header + markdown(table, "method", select))
    atomic_write(out / GridDir.CONFIGURATIONS_MD, header + markdown(rows, "strategy", select))
    return [out / n for n in (GridDir.RUNS, GridDir.CONFIGURATIONS, GridDir.TABLE, GridDir.TABLE_MD,
                               GridDir.CONFIGURATIONS_MD)]
