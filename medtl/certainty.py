"""How sure ``medtl search`` is of its pick: the ranking it chose from, the runner-up's score, and whether the
margin is larger than the validation split's noise.

The noise is the stratified bootstrap standard error of the *difference* between the pick's and the runner-up's
validation metric (:func:`medtl.evaluation.noise.paired_difference_se`), each the mean over the seeds' runs as the
search compares them, from the validation probabilities every run saves (``predictions_val.csv``): the same images
score both, so what they have in common cancels. A margin below one standard error means another draw of
validation images could well have reversed the choice; the two cuts are then equally supported by the data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .compare.significance import read_predictions
from .evaluation.bootstrap import bootstrap_metrics, stratified_indices

RESAMPLES = 1000


@dataclass
class Certainty:
    """The validation ranking (best first), the pick and its runner-up with their scores, the bootstrap standard
    error of their difference (None when it cannot be measured: multi-label runs, runs saved without validation
    predictions, a single candidate), and, with
    ``--cut auto``, the estimator's own ranking."""

    select: str
    ranking: list[tuple[str, float]]
    se: float | None
    estimator: str | None = None
    estimate_ranking: list[tuple[str, float]] | None = None
    estimate_tolerance: float | None = None

    @property
    def margin(self) -> float | None:
        return self.ranking[0][1] - self.ranking[1][1] if len(self.ranking) > 1 else None

    @property
    def within_noise(self) -> bool | None:
        """True when the pick beats its runner-up by less than one standard error of the difference."""
        return None if self.se is None or self.margin is None else bool(self.margin < self.se)

    def to_dict(self) -> dict:
        return asdict(self) | {"margin": self.margin, "within_noise": self.within_noise}

    def lines(self, shown: int = 5) -> list[str]:
        metric = f"validation {self.select.upper()}"
        out = []
        if self.estimate_ranking:
            top = ", ".join(f"{c} {s:.4f}" for c, s in self.estimate_ranking[:shown])
            out.append(f"how sure: the {self.estimator} estimate ranked {top}"
                       + (f" (tolerance {self.estimate_tolerance:.4f})" if self.estimate_tolerance else ""))
        out.append(f"how sure: {metric} ranked " + ", ".join(f"{c} {s:.4f}" for c, s in self.ranking[:shown]))
        if self.margin is None:
            out.append("how sure: a single candidate was trained to the end; nothing to compare it with")
        elif self.se is None:
            out.append(f"how sure: the pick {self.ranking[0][0]} leads the runner-up {self.ranking[1][0]} by "
                       f"{self.margin:.4f}; the noise of the difference could not be measured (multi-label runs, or "
                       "runs without predictions_val.csv)")
        else:
            verdict = ("smaller than the validation noise: the data do not tell the two apart" if self.within_noise
                       else "larger than the validation noise")
            out.append(f"how sure: the pick {self.ranking[0][0]} leads the runner-up {self.ranking[1][0]} "
                       f"({self.ranking[1][1]:.4f}) by {self.margin:.4f}, {verdict} (bootstrap standard error of the "
                       f"difference {self.se:.4f} on the validation images)")
        return out


def mean_metric_resamples(run_dirs: list[Path], select: str, indices: np.ndarray) -> np.ndarray:
    """Per bootstrap resample of the validation images, the mean over ``run_dirs`` of their validation ``select``."""
    values = []
    for run_dir in run_dirs:
        labels, prob, task = read_predictions(Path(run_dir), "val")
        values.append(bootstrap_metrics(labels, prob, np.zeros(len(labels), dtype=np.int64), task, indices)[select])
    return np.mean(values, axis=0)


def difference_se(pick: list[Path], runner_up: list[Path], select: str, resamples: int = RESAMPLES,
                  seed: int = 0) -> float | None:
    """Bootstrap standard error of (mean over ``pick``'s runs) - (mean over ``runner_up``'s) of validation ``select``;
    None for multi-label runs (no single label column to resample by) and runs without validation predictions."""
    if not all((Path(d) / "predictions_val.csv").is_file() for d in [*pick, *runner_up]):
        return None
    try:
        labels, _, task = read_predictions(Path(pick[0]), "val")
    except ValueError:
        return None
    indices = stratified_indices(labels, task, resamples, seed)
    diff = mean_metric_resamples(pick, select, indices) - mean_metric_resamples(runner_up, select, indices)
    return float(np.nanstd(diff, ddof=1))


def certainty(rows: list[dict], run_dirs: dict[str, list[Path]], select: str, pick: str, estimate=None) -> Certainty:
    """The :class:`Certainty` of ``pick`` among the candidate ``rows`` trained to the end (``run_dirs``: each cut's
    runs); ``estimate``: the :class:`~medtl.analysis.autocut.AutoCut` of ``--cut auto``, if any."""
    ranking = sorted(((r["cut"], float(r[f"val_{select}_mean"])) for r in rows if r.get("stopped_at") is None),
                     key=lambda cs: (cs[0] != pick, -cs[1]))  # the pick first (ties were broken for it)
    se = difference_se(run_dirs[pick], run_dirs[ranking[1][0]], select) if len(ranking) > 1 else None
    if estimate is None:
        return Certainty(select, ranking, se)
    return Certainty(select, ranking, se, estimate.estimator, [(s.cut, s.score) for s in estimate.ranking()],
                     estimate.tolerance)
