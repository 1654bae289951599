"""Successive halving of a search's candidates, by the rule of ASHA (Li et al., MLSys 2020) as Ray Tune's
``ASHAScheduler`` applies it: rungs after ``grace``, ``grace·eta``, ``grace·eta²``, ... epochs (below the run
length); at a rung a candidate (a cut: its runs over the seeds) goes on only if its score is at least the
``1 - 1/eta`` quantile of the scores recorded there. The score is the mean over the candidate's runs of the best
*validation* metric so far (what model selection would keep); test metrics are never looked at. Stopped runs keep
their checkpoint, so a longer search resumes them instead of starting over; the survivors train to the end.

:func:`successive_halving` applies the rule synchronously: every candidate reaches a rung before any is compared
there, so the outcome is deterministic and the same whatever executor trains the runs. Ray Tune's scheduler
(:meth:`medtl.compare.ray_executor.RayExecutor.halving`) applies it asynchronously, comparing a candidate with those
that reached the rung before it.

The rule as published compares point estimates, but a rung's scores are measured on the validation split, and on a
small one (BreastMNIST: 78 images) a difference of 0.0002 AUROC is far below what other validation images would give.
With ``noise > 0`` a rung also keeps every candidate within ``noise`` standard errors (of the metric at the cut-off,
on the validation split's class counts: :mod:`medtl.evaluation.noise`) below the cut-off: a candidate is stopped only
when the data tell it apart from those that go on."""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..rundir import RunDir
from ..training import Paused
from .grid import GridRun
from .runner import Executor, fit_run


@dataclass(frozen=True)
class Halving:
    """The rungs of successive halving for runs of ``epochs`` epochs; ``noise``: the width of the band kept below a
    rung's cut-off, in standard errors of the validation metric (0: ASHA's rule as published)."""

    epochs: int
    grace: int = 3
    eta: int = 2
    noise: float = 1.0

    @property
    def milestones(self) -> list[int]:
        out, m = [], self.grace
        while m < self.epochs:
            out.append(m)
            m *= self.eta
        return out

    def cutoff(self, scores: dict[str, float]) -> float:
        """ASHA's cut-off on a whole rung: the ``1 - 1/eta`` quantile of the scores."""
        return float(np.nanpercentile(list(scores.values()), (1 - 1 / self.eta) * 100))

    def band(self, scores: dict[str, float], error: Callable[[float], float] | None) -> float:
        """How far below the cut-off a candidate still goes on: ``noise`` times ``error`` (the standard error of a
        validation score of that value) at the cut-off; 0 without ``error``."""
        return self.noise * error(self.cutoff(scores)) if error is not None and self.noise > 0 else 0.0

    def survivors(self, scores: dict[str, float], error: Callable[[float], float] | None = None) -> list[str]:
        """The candidates scoring at least the cut-off less the noise band (ASHA's rule when ``error`` is None or
        ``noise`` is 0)."""
        floor = self.cutoff(scores) - self.band(scores, error)
        return [c for c, s in scores.items() if s >= floor]


def history(run: GridRun) -> list[dict]:
    """The run's epoch rows so far (``history.csv``; none before its first epoch)."""
    path = RunDir(run.run_dir) / RunDir.HISTORY
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def score(runs: list[GridRun], epoch: int, select: str) -> float:
    """Mean over ``runs`` of the best validation ``select`` in their first ``epoch`` epochs."""
    return float(np.mean([max(r[f"val_{select}"] for r in history(run) if r["epoch"] <= epoch) for run in runs]))


def train_until(job: tuple[GridRun, int], verbose: bool = False) -> None:
    """Train (or resume) the run ``job[0]`` up to epoch ``job[1]`` and pause it there with a checkpoint; a run that
    is finished, or already paused at or beyond that epoch, is left as it is; at the run's last epoch it finishes."""
    run, until = job
    rd = RunDir(run.run_dir)
    if rd.finished or rd.resumable and rd.load_checkpoint()[0].epoch >= until:
        return
    try:
        fit_run(run, verbose, report=lambda row: row["epoch"] < until)
    except Paused:
        pass


def successive_halving(candidates: dict[str, list[GridRun]], plan: Halving, select: str, executor: Executor,
                       verbose: bool = False, error: Callable[[float], float] | None = None
                       ) -> dict[str, int | None]:
    """Train ``candidates`` rung by rung through ``executor``; returns, per candidate, the rung it was stopped at
    (None: trained to the end). ``error``: the validation metric's standard error at a value, for the noise band."""
    stopped: dict[str, int | None] = dict.fromkeys(candidates)
    alive = list(candidates)
    for m in [*plan.milestones, plan.epochs]:
        jobs = [(run, m) for cut in alive for run in candidates[cut]]
        for _ in executor.map(partial(train_until, verbose=verbose), jobs):
            pass
        if m == plan.epochs:
            break
        keep = plan.survivors({cut: score(candidates[cut], m, select) for cut in alive}, error)
        stopped.update({cut: m for cut in alive if cut not in keep})
        alive = keep
    return stopped
