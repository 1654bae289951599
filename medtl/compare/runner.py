"""The one experiment runner of ``medtl compare`` and ``medtl search``: train the runs of a grid that have not
finished (resuming interrupted ones) through an executor, then read every run's record.

An executor maps a function over runs and yields each result as it completes; :class:`LocalExecutor` runs them in
this process or in a pool of processes. A distributed executor only has to do the same: a run's directory name is
a hash of its configuration and its checkpoint resumes it, so a run retried anywhere continues where it stopped."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from multiprocessing import get_context
from typing import Protocol

import torch

from .. import experiment
from ..evaluation import latency_ms
from ..rundir import RunDir
from .grid import GridRun

log = logging.getLogger("medtl")


class Executor(Protocol):
    threads: int | None  # torch threads each run should use when the config does not say (None: torch's default)

    def map(self, fn: Callable, items: list) -> Iterator:
        """``fn(item)`` for every item, yielded in the order they complete."""


class LocalExecutor:
    """Runs in this process (``workers=1``) or in ``workers`` spawned processes at once."""

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None

    def map(self, fn: Callable, items: list) -> Iterator:
        if self.workers <= 1:
            yield from map(fn, items)
            return
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) as pool:
            for done in as_completed([pool.submit(fn, item) for item in items]):
                yield done.result()


def run_grid(runs: list[GridRun], executor: Executor | None = None, verbose: bool = False,
             latency: bool = True) -> list[dict]:
    """Train every unfinished run of ``runs`` and return one record per run (metrics, place in the grid and, with
    ``latency``, the model's CPU latency), in the order of ``runs``; one line is logged per finished run."""
    todo = [r for r in runs if not RunDir(r.run_dir).finished]
    log.info("%d runs, %d already finished", len(runs), len(runs) - len(todo))
    began = time.perf_counter()
    job = partial(train_run, verbose=verbose, latency=latency)
    for i, line in enumerate((executor or LocalExecutor()).map(job, todo), 1):
        log.info("[%d/%d] %s, %.0fs elapsed", i, len(todo), line, time.perf_counter() - began)
    return [record(run, latency) for run in runs]


def fit_run(run: GridRun, verbose: bool = False, report=None) -> bool:
    """Train one run: resumed from its checkpoint if it was interrupted (then True), else from the start. ``report``
    sees every epoch's row and may pause the run (:meth:`medtl.training.Trainer.fit`)."""
    if RunDir(run.run_dir).resumable:
        experiment.resume(run.run_dir, verbose=verbose, report=report)
        return True
    experiment.start(run.config, run.run_dir, verbose, report)
    return False


def train_run(run: GridRun, verbose: bool = False, latency: bool = True) -> str:
    """:func:`fit_run`, then (with ``latency``) the run's CPU latency; returns its progress line (name, test AUROC,
    time)."""
    began = time.perf_counter()
    resumed = fit_run(run, verbose)
    if latency:
        measure_latency(RunDir(run.run_dir))
    auroc = RunDir(run.run_dir).metrics()["test_auroc"]
    return (f"{run.run_dir.name}{' (resumed)' if resumed else ''}: test AUROC {auroc:.4f}, "
            f"{time.perf_counter() - began:.0f}s")


def measure_latency(run: RunDir) -> None:
    """CPU inference latency of the run's saved model (batch 1, warm-up, median), into ``latency.json``."""
    model = run.load_model()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: comparable between runs, and robust on a shared machine
    try:
        ms = latency_ms(model, model.spec.in_chans, model.spec.image_size, warmup=10, repeats=50,
                        dims=len(model.spec.input_shape) - 1)
    finally:
        torch.set_num_threads(threads)
    run.write_json(RunDir.LATENCY, {"latency_ms": ms, "batch_size": 1, "threads": 1})


def record(run: GridRun, latency: bool = True) -> dict:
    """A finished run's metrics with its place in the grid and (with ``latency``) its measured CPU latency."""
    rd = RunDir(run.run_dir)
    metrics = rd.metrics()
    if latency and not (rd / RunDir.LATENCY).is_file():  # finished before its latency was measured
        measure_latency(rd)
    return {**metrics, "model_cut": metrics.get("cut"), "strategy": run.strategy, "cut": run.cut, "level": run.level,
            "repeat": run.repeat, "run": run.run_dir.name, **(rd.read_json(RunDir.LATENCY) if latency else {})}

