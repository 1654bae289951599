"""``medtl search``: the paper's two-stage hierarchical search for the cut (Peng et al., §3 of the spec).

Stage 1 fine-tunes TruncatedTL at every block boundary (the last one is the whole network); stage 2 at every
layer-level cut inside the best block (optionally inside the next block too). With ``--cut auto`` the one-pass
estimate (:mod:`medtl.analysis.autocut`) replaces stage 1: only the block holding its pick is fine-tuned, whole
and at every layer inside it; with a ``shortlist`` of K it replaces both stages: the estimate's K best-ranked cuts are
fine-tuned and the best on validation is picked (an estimate ranks the right cut near the top more often than first).
With ``scheduler="asha"`` every cut is a candidate and successive halving
(:mod:`medtl.compare.halving`) stops the worse ones at rungs on their validation metric. Cuts are compared on the mean
*validation* metric over seeds; test metrics are recorded for every candidate but never used to choose. Runs live
in ``out/runs`` under the names ``medtl compare`` gives them, so a search and a compare grid of the same
configuration share finished runs, and an interrupted search continues where it stopped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from .analysis.autocut import estimate_for
from .artifacts import write_csv, write_json
from .backbones import backbone_cuts, create_backbone
from .certainty import Certainty, certainty
from .compare import (
    Executor,
    LocalExecutor,
    best_on_validation,
    build_grid,
    record,
    run_grid,
    summarise,
)
from .tracking import close_grid, open_grid
from .compare.halving import Halving, history, score, successive_halving
from .config import TrainConfig
from .errors import ConfigError
from .evaluation.noise import noise_of
from .resolve import load_data
from .rundir import SearchDir, make_dir
from .training.recipe import default_epochs

log = logging.getLogger("medtl")

SELECT = ("auprc", "auroc")
SCHEDULERS = ("asha",)
KEYS = ("val_auroc", "val_auprc", "test_auroc", "test_auprc")


@dataclass
class SearchResult:
    """Every candidate (one row per cut), the stage-1 and final picks, and the training cost."""

    candidates: list[dict]
    select: str
    block_pick: str | None  # None for successive halving (no stages)
    pick: str
    cost: dict
    files: list[Path]
    sure: Certainty | None = None
    shortlist: list[str] | None = None  # --shortlist: the estimate's best-ranked cuts, fine-tuned

    def table(self) -> str:
        select = self.select
        lines = [f"{'stage':<6}{'cut':<16}{'seeds':>6}{'val ' + select.upper():>12}"
                 f"{'test AUROC':>18}{'test AUPRC':>18}"]
        for r in self.candidates:
            test = (f"{r['test_auroc_mean']:>11.4f} ± {r['test_auroc_std']:.3f}"
                    f"{r['test_auprc_mean']:>11.4f} ± {r['test_auprc_std']:.3f}" if r.get("stopped_at") is None
                    else f"{'stopped after epoch ' + str(r['stopped_at']):>36}")
            lines.append(f"{r['stage']:<6}{r['cut']:<16}{r['runs']:>6}{r[f'val_{select}_mean']:>12.4f}{test}"
                         f"{'  <- pick' if r['cut'] == self.pick else ''}")
        c = self.cost
        if self.shortlist:
            lines.append(f"the estimate's {len(self.shortlist)} best-ranked cuts fine-tuned, the search picked "
                         f"{self.pick}: {c['runs']} runs, {c['epochs']} epochs, {c['train_seconds']:.0f}s of training "
                         f"({c['fraction_of_exhaustive_runs']:.0%} of the {c['exhaustive_runs']} runs of an "
                         "exhaustive search)")
        elif self.block_pick:
            lines.append(f"stage 1 picked {self.block_pick}, the search {self.pick}: {c['runs']} runs, {c['epochs']} "
                         f"epochs, {c['train_seconds']:.0f}s of training "
                         f"({c['fraction_of_exhaustive_runs']:.0%} of the "
                         f"{c['exhaustive_runs']} runs of an exhaustive search)")
        else:  # successive halving starts every run: its cost is in epochs
            lines.append(f"successive halving picked {self.pick}: {c['epochs']} epochs, {c['train_seconds']:.0f}s of "
                         f"training ({c['fraction_of_exhaustive_epochs_at_most']:.0%} of the at most "
                         f"{c['exhaustive_epochs_at_most']} epochs of an exhaustive search)")
        if self.sure is not None:
            lines += self.sure.lines()
        return "\n".join(lines)


def stage_two(cuts: list[tuple[str, str]], block: str, next_block: bool) -> list[str]:
    """Layer-level cuts strictly inside ``block`` (and inside the block after it when ``next_block``)."""
    names = [name for name, _ in cuts]
    ends = [i for i, (_, level) in enumerate(cuts) if level != "layer"]
    end = names.index(block)
    blocks = [end] + ([e for e in ends if e > end][:1] if next_block else [])
    inner = []
    for stop in blocks:
        start = max(e for e in ends if e < stop) if any(e < stop for e in ends) else -1
        inner += [name for name, level in cuts[start + 1:stop] if level == "layer"]
    return inner


def search(base: TrainConfig, *, seeds: list[int] = (0, 1, 2), select: str = "auprc", next_block: bool = False,
           auto: bool = False, shortlist: int = 0, out: str | Path = "runs/search", workers: int = 1,
           verbose: bool = False, executor: Executor | None = None, scheduler: str | None = None,
           halving: Halving | None = None) -> SearchResult:
    """Run the two-stage search for ``base`` (trained as ``truncated``; its cut is the search's to choose) and write
    ``search.csv`` (every candidate's validation and test metrics) and ``search.json`` (the picks and the cost) to
    ``out``. With ``auto`` the one-pass estimate replaces stage 1 (with ``shortlist`` K > 0, both stages: its K
    best-ranked cuts are fine-tuned); with ``scheduler="asha"`` successive halving
    (``halving``: its rungs, default after 3, 6, 12, ... epochs, halving each time) replaces both stages.
    ``executor`` trains the runs (default: ``workers`` local processes)."""
    if select not in SELECT:
        raise ConfigError(f"select must be one of {', '.join(SELECT)}, got {select!r}.")
    if not seeds:
        raise ConfigError("give at least one seed (--seeds 0,1,2).")
    if scheduler not in (None, *SCHEDULERS):
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}.")
    if scheduler and (auto or next_block):
        raise ConfigError("--scheduler asha searches every cut at once; drop --cut auto and --next-block.")
    if shortlist and (not auto or next_block):
        raise ConfigError("--shortlist fine-tunes the --cut auto estimate's best-ranked cuts: add --cut auto "
                          "(and drop --next-block, which belongs to the two stages).")
    base = replace(base, strategy="truncated", cut=None).validate()
    out = make_dir(out)
    base = open_grid(base, out, "search")  # --track: a parent run with the grid's runs nested
    cuts = [(c.name, c.level) for c in backbone_cuts(create_backbone(base.backbone, None)[0])]
    executor = executor or LocalExecutor(workers)
    if scheduler == "asha":
        # the rungs are epochs of one fixed length: the recipe's, when --epochs leaves it to the data size
        data = load_data(base)
        epochs = base.epochs or default_epochs(len(data.train))
        halving = replace(halving, epochs=epochs) if halving is not None else Halving(epochs)
        return _halving_search(replace(base, epochs=epochs), cuts, list(seeds), select, out, executor, halving,
                               verbose, noise_of(select, data.val.labels.numpy(), data.task))
    planned: list[int] = []  # each run's epochs (the recipe resolves them per run when --epochs is not given)

    def fine_tune(names: list[str], stage: int) -> list[dict]:
        log.info("search: stage %d, %d cut(s) x %d seed(s)", stage, len(names), len(seeds))
        records = run_grid(build_grid(base, ["truncated"], names, list(seeds), None, out), executor, verbose,
                           latency=False)
        planned.extend(r.get("epochs_planned", r["epochs_run"]) for r in records)  # older runs: what they ran
        return [{"stage": stage, **row} for row in summarise(records, KEYS, totals=("epochs_run", "train_seconds"))]

    estimate, chosen = None, None  # chosen: the shortlist, fine-tuned in network order
    if auto:
        estimate = estimate_for(base, select)
        log.info(estimate.table())
    if estimate is not None and shortlist:
        best_ranked = {s.cut for s in estimate.ranking()[:shortlist]}
        chosen = [name for name, _ in cuts if name in best_ranked]
        rows = fine_tune(chosen, 1)
        block_pick: str | None = None
    elif estimate is not None:
        block_pick = block_of(cuts, estimate.pick)
        rows = fine_tune([block_pick], 1)
    else:
        rows = fine_tune([name for name, level in cuts if level == "block"], 1)
        block_pick = best_on_validation(rows, select)["cut"]
    inner = stage_two(cuts, block_pick, next_block) if block_pick else []
    if inner:
        rows += fine_tune(inner, 2)
    pick = best_on_validation(rows, select)["cut"]
    for row in rows:
        row["picked"] = row["cut"] == pick
    cost = _cost(rows, len(cuts), len(seeds), max(planned))
    if estimate is not None:
        cost["estimate_seconds"] = estimate.seconds
    sure = _certainty(base, rows, list(seeds), select, pick, out, estimate)
    return _write(out, rows, select, block_pick, pick, cost, list(seeds), base,
                  {"stage_two": inner, "shortlist": chosen,
                   "estimate": estimate.to_dict() if estimate else None}, sure)


def _halving_search(base: TrainConfig, cuts: list[tuple[str, str]], seeds: list[int], select: str, out: Path,
                    executor: Executor, plan: Halving, verbose: bool, error) -> SearchResult:
    """Every cut a candidate, successive halving on validation ``select`` (``error``: its standard error at a value,
    for the noise band); the pick is the best on validation of the cuts trained to the end. The cost counts every
    epoch trained, stopped runs' included (``history.csv``). Ray Tune's ASHAScheduler knows no noise band, so with
    one the rungs are decided here and each rung's runs go to the executor (Ray too) as one batch."""
    if plan.grace < 1 or plan.eta < 2:
        raise ConfigError(f"successive halving needs --grace-epochs >= 1 and --reduction-factor >= 2, got "
                          f"{plan.grace} and {plan.eta}.")
    names = [name for name, _ in cuts]
    runs = build_grid(base, ["truncated"], names, seeds, None, out)
    candidates = {cut: [r for r in runs if r.cut == cut] for cut in names}
    log.info("search: successive halving of %d cut(s) x %d seed(s), rungs after %s epoch(s), 1/%d go on",
             len(names), len(seeds), ", ".join(map(str, plan.milestones)) or "no", plan.eta)
    halve = getattr(executor, "halving", None) if plan.noise == 0 else None  # Ray: Tune's ASHAScheduler
    stopped = (halve(candidates, plan, select, verbose) if halve
               else successive_halving(candidates, plan, select, executor, verbose, error))
    rows = []
    for (cut, level), group in zip(cuts, candidates.values()):
        trained = [history(run) for run in group]
        cost = {"epochs_run": sum(len(h) for h in trained),
                "train_seconds": sum(r["seconds"] for h in trained for r in h)}
        if stopped[cut] is None:
            row = summarise([record(run, latency=False) for run in group], KEYS)[0]
        else:
            row = {"strategy": "truncated", "cut": cut, "level": level, "runs": len(group),
                   **{f"val_{m}_mean": score(group, stopped[cut], m) for m in SELECT}}
        rows.append({"stage": "asha", **row, **cost, "stopped_at": stopped[cut]})
    keys = dict.fromkeys(k for r in rows for k in r)  # stopped cuts have no test metrics: empty in search.csv
    rows = [{k: r.get(k) for k in keys} for r in rows]
    finished = [r for r in rows if r["stopped_at"] is None]
    pick = best_on_validation(finished, select)["cut"]
    for row in rows:
        row["picked"] = row["cut"] == pick
    cost = _cost(rows, len(cuts), len(seeds), base.epochs)
    plan_info = {"grace_epochs": plan.grace, "reduction_factor": plan.eta, "milestones": plan.milestones,
                 "noise_band_se": plan.noise}
    sure = _certainty(base, rows, seeds, select, pick, out)
    return _write(out, rows, select, None, pick, cost, seeds, base, {"scheduler": "asha", "halving": plan_info}, sure)


def _certainty(base: TrainConfig, rows: list[dict], seeds: list[int], select: str, pick: str, out: Path,
               estimate=None) -> Certainty:
    """How sure the pick is (:mod:`medtl.certainty`), from the finished candidates' validation predictions."""
    finished = [r["cut"] for r in rows if r.get("stopped_at") is None]
    runs = build_grid(base, ["truncated"], finished, seeds, None, out)
    return certainty(rows, {cut: [r.run_dir for r in runs if r.cut == cut] for cut in finished}, select, pick,
                     estimate)


def _write(out: Path, rows: list[dict], select: str, block_pick: str | None, pick: str, cost: dict, seeds: list[int],
           base: TrainConfig, extra: dict, sure: Certainty) -> SearchResult:
    write_csv(out / SearchDir.CSV, rows)
    write_json(out / SearchDir.JSON, {"select": f"val_{select}", "seeds": seeds, "block_pick": block_pick,
                                      "pick": pick, "cost": cost, "out": str(out), "config": base.to_dict(),
                                      "certainty": sure.to_dict(), **extra})
    close_grid(base, out, [out / SearchDir.CSV, out / SearchDir.JSON])
    return SearchResult(rows, select, block_pick, pick, cost, [out / SearchDir.CSV, out / SearchDir.JSON], sure,
                        extra.get("shortlist"))


def block_of(cuts: list[tuple[str, str]], name: str) -> str:
    """The block-level cut (or the stem) that ends the block ``name`` lies in."""
    names = [n for n, _ in cuts]
    return next(n for n, level in cuts[names.index(name):] if level != "layer")


def _cost(rows: list[dict], cuts: int, seeds: int, epochs_per_run: int) -> dict:
    """What the search trained, next to the exhaustive search over every cut (its runs, and its epochs at most)."""
    runs, epochs, most = sum(r["runs"] for r in rows), sum(r["epochs_run"] for r in rows), cuts * seeds * epochs_per_run
    return {"runs": runs, "epochs": epochs, "train_seconds": sum(r["train_seconds"] for r in rows),
            "exhaustive_runs": cuts * seeds, "exhaustive_epochs_at_most": most,
            "fraction_of_exhaustive_runs": runs / (cuts * seeds),
            "fraction_of_exhaustive_epochs_at_most": epochs / most}
