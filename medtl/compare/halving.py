"""Successive halving of a search's candidates, by the rule of ASHA (Li et al., MLSys 2020) as Ray Tune's
``ASHAScheduler`` applies it: rungs after ``grace``, ``grace·eta``, ``grace·eta²``, ... epochs (below the run
length); at a rung a candidate (a cut: its runs over the seeds) goes on only if its score is at least the
``1 - 1/eta`` quantile of the scores recorded there. The score is the mean over the candidate's runs of the best
*validation* metric so far (what model selection would keep); test metrics are never looked at. Stopped runs keep
their checkpoint, so a longer search resumes them instead of starting over; the survivors train to the end.

:func:`successive_halving` applies the rule synchronously: every candidate reaches a rung before any is compared
there, so the outcome is deterministic and the same whatever executor trains the runs. Ray Tune's scheduler
(:meth:`medtl.compare.ray_executor.RayExecutor.halving`) applies it asynchronously, comparing a candidate with those
that reached the rung before it."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..rundir import RunDir
from ..training import Paused
from .grid import GridRun
from .runner import Executor, fit_run


@dataclass(frozen=True)
class Halving:
    """The rungs of successive halving for runs of ``epochs`` epochs."""

    epochs: int
    grace: int = 3
    eta: int = 2

    @property
    def milestones(self) -> list[int]:
        out, m = [], self.grace
        while m < self.epochs:
            out.append(m)
            m *= self.eta
        return out

    def survivors(self, scores: dict[str, float]) -> list[str]:
        """ASHA's rule on a whole rung: the candidates scoring at least the ``1 - 1/eta`` quantile."""
        cutoff = np.nanpercentile(list(scores.values()), (1 - 1 / self.eta) * 100)
        return [c for c, s in scores.items() if s >= cutoff]


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
                       verbose: bool = False) -> dict[str, int | None]:
    """Train ``candidates`` rung by rung through ``executor``; returns, per candidate, the rung it was stopped at
    (None: trained to the end)."""
    stopped: dict[str, int | None] = dict.fromkeys(candidates)
    alive = list(candidates)
    for m in [*plan.milestones, plan.epochs]:
        jobs = [(run, m) for cut in alive for run in candidates[cut]]
        for _ in executor.map(partial(train_until, verbose=verbose), jobs):
            pass
        if m == plan.epochs:
            break
        keep = plan.survivors({cut: score(candidates[cut], m, select) for cut in alive})
        stopped.update({cut: m for cut in alive if cut not in keep})
        alive = keep
    return stopped
