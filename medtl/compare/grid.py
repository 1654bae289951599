"""The comparison grid: one :class:`~medtl.config.TrainConfig` per strategy × cut point × repeat, each trained in a
run directory named by its configuration, so an interrupted grid continues where it stopped."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..backbones import backbone_cuts, create_backbone
from ..config import TrainConfig
from ..errors import ConfigError
from ..rundir import RunDir
from ..strategies import STRATEGIES, strategy_options

CUT_LEVELS = ("block", "layer", "all")


@dataclass(frozen=True)
class GridRun:
    """One training run of the grid; ``cut`` is the strategy's cut point (its cut, freeze or slim point)."""

    strategy: str
    cut: str | None
    level: str | None
    repeat: int
    config: TrainConfig
    run_dir: Path

    @property
    def finished(self) -> bool:
        return RunDir(self.run_dir).finished


def cut_points(backbone: str, cuts: str | list[str]) -> list[tuple[str, str]]:
    """``(cut, level)`` for the cut axis: every ``block``-level cut, every ``layer``-level one, ``all`` (stem
    included), or the named cuts. The backbone's last cut is left out: there, truncation is full fine-tuning, freezing
    is linear probing and nothing is left to slim."""
    available = backbone_cuts(create_backbone(backbone, None)[0])
    levels = {c.name: c.level for c in available}
    levels.update({alias: c.level for c in available for alias in c.aliases})
    if isinstance(cuts, str) and cuts in CUT_LEVELS:
        return [(c.name, c.level) for c in available[:-1] if cuts == "all" or c.level == cuts]
    names = cuts.split(",") if isinstance(cuts, str) else list(cuts)
    unknown = [n for n in names if n not in levels]
    if unknown:
        raise ConfigError(f"unknown cut(s) {', '.join(unknown)} for {backbone}; give block, layer, all or names from "
                          f"`medtl cuts --backbone {backbone}`.")
    return [(n, levels[n]) for n in names]


def build_grid(base: TrainConfig, strategies: list[str], cuts: str | list[str], seeds: list[int],
               resplits: int | None, out: Path) -> list[GridRun]:
    """The grid's runs, repeats outermost (a grid stopped early has whole repeats). ``resplits`` K replaces the
    seeds by K repeats that each draw their own stratified split of the pooled data (and use its index as seed)."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown strateg{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
                          f"choose from {', '.join(STRATEGIES)}.")
    missing = [s for s in strategies if not STRATEGIES[s].available]
    if missing:
        raise ConfigError(f"{', '.join(missing)} need{'s' if len(missing) == 1 else ''} "
                          f"{', '.join(STRATEGIES[s].requires for s in missing)}; install it with "
                          f'pip install "medtl[{STRATEGIES[missing[0]].requires}]", or leave it out of --strategies.')
    if not seeds and resplits is None:
        raise ConfigError("give at least one seed (--seeds 0,1,2) or --resplits K.")
    points = cut_points(base.backbone, cuts) if any(STRATEGIES[s].cut_option for s in strategies) else []
    repeats = range(resplits) if resplits is not None else seeds
    runs = []
    for repeat in repeats:
        for strategy in strategies:
            axis = STRATEGIES[strategy].cut_option
            for cut, level in (points if axis else [(None, None)]):
                cfg = replace(_for_strategy(base, strategy), seed=repeat, report=False,
                              resplit=repeat if resplits is not None else base.resplit)
                if axis:
                    cfg = replace(cfg, **{axis: cut})
                runs.append(GridRun(strategy, cut, level, repeat, cfg, out / "runs" / run_name(cfg, strategy, cut)))
    return runs


def _for_strategy(base: TrainConfig, strategy: str) -> TrainConfig:
    """``base`` for ``strategy``, with the options of other strategies (a freeze point, a layer decay) cleared."""
    accepted = set(STRATEGIES[strategy].params)
    return replace(base, strategy=strategy, **{o: None for o in strategy_options() - accepted})


def run_name(cfg: TrainConfig, strategy: str, cut: str | None) -> str:
    """``<strategy>-<cut>-s<seed>[-r<resplit>]-<hash of every option that changes the result>``."""
    digest = cfg.fingerprint()[:8]
    resplit = f"-r{cfg.resplit}" if cfg.resplit is not None else ""
    return f"{strategy}-{cut or 'all'}-s{cfg.seed}{resplit}-{digest}"
