"""Ray as the executor of ``medtl compare`` and ``medtl search`` (``--executor ray``): each run is a Ray Tune trial
that reserves its CPUs and GPUs on whichever node has them free.

A trial calls the same function a local worker does, on the same run directory: its name is a hash of the options
and its checkpoint resumes it, so a trial retried on another node after a failure (``max_failures``), a restored Tune
experiment and a re-run of the command all continue the run instead of starting over, and the metrics do not depend
on the executor. Every node must see the working directory and ``--out`` at the same path (a shared filesystem);
trials import medtl from where the driver does (``PYTHONPATH`` in the job's runtime environment)."""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..cluster import check_reachable
from ..errors import ConfigError, MedtlError
from ..optional import require
from .grid import GridRun
from .halving import Halving, score, train_until

MEDTL_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that holds the medtl the driver imported


def _tune():
    return require("ray.tune", extra="ray", purpose="--executor ray (or choose --executor local)")


class RayExecutor:
    """Runs as Ray Tune trials on the cluster at ``address`` (``auto``, ``HOST:PORT``; None: a local one, or the one
    ``ray.init`` already joined), ``cpus_per_run`` CPUs (and torch threads) and ``gpus_per_run`` GPUs each."""

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0,
                 max_failures: int = 3, storage: str | Path | None = None):
        if cpus_per_run < 1 or gpus_per_run < 0:
            raise ConfigError(f"--cpus-per-run must be at least 1 and --gpus-per-run at least 0, got {cpus_per_run} "
                              f"and {gpus_per_run}.")
        check_reachable(address)  # before any work: ray.init retries an unreachable address for minutes
        self.address, self.cpus, self.gpus = address, cpus_per_run, gpus_per_run
        self.threads = cpus_per_run
        self.max_failures = max_failures
        self.storage = None if storage is None else str(Path(storage).resolve())  # Tune's state; default ~/ray_results

    def map(self, fn: Callable, items: list) -> Iterator:
        if not items:
            return
        cwd = os.getcwd()

        def trial(config: dict) -> None:
            from ray import tune

            os.chdir(cwd)  # relative --out and --data paths mean what they meant to the driver
            tune.report({"line": fn(items[config["index"]])})

        tune = _tune()
        results = self._fit(trial, {"index": tune.grid_search(list(range(len(items))))})
        for result in sorted(results, key=lambda r: r.config["index"]):
            yield result.metrics["line"]

    def halving(self, candidates: dict[str, list[GridRun]], plan: Halving, select: str,
                verbose: bool = False) -> dict[str, int | None]:
        """Successive halving through Ray Tune's ``ASHAScheduler``: one trial per candidate, which trains its runs to
        each rung in turn and reports their score there; returns, per candidate, the rung it was stopped at (None:
        trained to the end)."""
        tune = _tune()
        ASHAScheduler = require("ray.tune.schedulers", extra="ray", purpose="--scheduler asha").ASHAScheduler

        cwd = os.getcwd()

        def trial(config: dict) -> None:
            from ray import tune

            os.chdir(cwd)
            runs = candidates[config["cut"]]
            for m in [*plan.milestones, plan.epochs]:
                for run in runs:
                    train_until((run, m), verbose)
                tune.report({"epoch": m, "score": score(runs, m, select)})

        asha = ASHAScheduler(time_attr="epoch", metric="score", mode="max", max_t=plan.epochs,
                             grace_period=plan.grace, reduction_factor=plan.eta)
        results = self._fit(trial, {"cut": tune.grid_search(list(candidates))}, tune.TuneConfig(scheduler=asha))
        last = {r.config["cut"]: r.metrics["epoch"] for r in results}
        return {cut: None if last[cut] >= plan.epochs else last[cut] for cut in candidates}

    def _fit(self, trial: Callable, space: dict, tune_config=None):
        tune = _tune()
        ray = require("ray", extra="ray", purpose="--executor ray")

        if not ray.is_initialized():
            previous = signal.getsignal(signal.SIGTERM)
            ray.init(address=self.address, include_dashboard=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": MEDTL_ROOT}})
            if previous is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)  # ray.init made SIGTERM a sys.exit: keep the orderly stop
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": self.cpus, "gpu": self.gpus}), param_space=space,
            tune_config=tune_config,
            run_config=tune.RunConfig(storage_path=self.storage, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=self.max_failures)))
        results = tuner.fit()
        failed = [r for r in results if r.error is not None]
        if failed:
            raise MedtlError(f"{len(failed)} of {len(results)} Ray trial(s) failed after {self.max_failures} "
                             f"retries; the first: {failed[0].error}")
        return results
