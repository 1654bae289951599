"""Transfer strategies of the paper (and two beyond it), each a configuration of :class:`Strategy`.

A new strategy is a factory function here (or in its own small module) plus a registry entry.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError, unknown
from .base import Strategy
from .transfusion import transfusion


def truncated(cut: str | None = None) -> Strategy:
    """TruncatedTL: keep and fine-tune the pretrained layers up to ``cut``, discard the rest."""
    if cut is None:
        raise ConfigError("the truncated strategy needs a cut: pass --cut NAME (see `medtl cuts --backbone ...`).")
    return Strategy("truncated", cut=cut)


def full(cut: str | None = None) -> Strategy:
    """Full fine-tuning (FTL): every pretrained layer kept and trained."""
    return Strategy("full", cut=cut)


def scratch(cut: str | None = None) -> Strategy:
    """Training from scratch: the same architecture, randomly initialised."""
    return Strategy("scratch", cut=cut, pretrained=False)


def linear(cut: str | None = None) -> Strategy:
    """Linear probing: the whole pretrained trunk frozen (BatchNorm statistics too), a new head trained."""
    return Strategy("linear", cut=cut, freeze_to="all")


def lwft(cut: str | None = None, freeze_to: str | None = None, pretrained_lr_scale: float = 1.0) -> Strategy:
    """Layer-wise fine-tuning: freeze from the input up to ``freeze_to``; fine-tune the rest, optionally at a
    lower learning rate for the pretrained layers (which, unlike in the paper's code, really takes effect)."""
    if freeze_to is None:
        raise ConfigError("the lwft strategy needs --freeze-to CUT (the last frozen cut).")
    return Strategy("lwft", cut=cut, freeze_to=freeze_to, pretrained_lr_scale=pretrained_lr_scale)


def llrd(cut: str | None = None, layer_decay: float = 0.7) -> Strategy:
    """Layer-wise learning-rate decay: every layer trains, lower layers at geometrically smaller rates."""
    return Strategy("llrd", cut=cut, layer_decay=layer_decay)


def lp_ft(cut: str | None = None, probe_epochs: int = 5) -> Strategy:
    """Linear probe, then fine-tune everything (LP-FT, Kumar et al. 2022).

    The head first learns on the frozen trunk for ``probe_epochs`` epochs, so that fine-tuning starts from a
    sensible head and distorts the pretrained features less; then every layer trains."""
    if probe_epochs < 1:
        raise ConfigError(f"lp-ft needs --probe-epochs of at least 1, got {probe_epochs}.")
    return Strategy("lp-ft", cut=cut, probe_epochs=probe_epochs)


@dataclass(frozen=True)
class StrategyEntry:
    """A registered strategy: its factory (whose keyword parameters, defaults included, are the strategy's
    options), its short name in the paper's table, and the option its cut axis sets in a grid (``medtl compare``)."""

    factory: Callable[..., Strategy]
    label: str
    cut_option: str | None = None

    @property
    def params(self) -> list[str]:
        """The options this strategy takes besides ``cut``."""
        return [p for p in inspect.signature(self.factory).parameters if p != "cut"]

    @property
    def summary(self) -> str:
        """The first sentence of the factory's docstring, unwrapped, without reST markup."""
        text = " ".join((self.factory.__doc__ or "").split("\n\n")[0].split())
        return text.replace("``", "")


STRATEGIES: dict[str, StrategyEntry] = {  # in the order of the paper's table
    "full": StrategyEntry(full, "FTL"),
    "linear": StrategyEntry(linear, "linear"),
    "lwft": StrategyEntry(lwft, "LWFT", cut_option="freeze_to"),
    "transfusion": StrategyEntry(transfusion, "TF", cut_option="slim_from"),
    "truncated": StrategyEntry(truncated, "TTL", cut_option="cut"),
    "scratch": StrategyEntry(scratch, "scratch"),
    "llrd": StrategyEntry(llrd, "LLRD"),
    "lp-ft": StrategyEntry(lp_ft, "LP-FT"),
}


def strategy_options() -> set[str]:
    """Every strategy-specific option of the registry (``freeze_to``, ``layer_decay``, ...)."""
    return {p for entry in STRATEGIES.values() for p in entry.params}


def get_strategy(name: str, **params) -> Strategy:
    """A registered strategy, configured.

    Args:
        name: a strategy name (`medtl strategies` lists them).
        **params: its options (`cut`, `freeze_to`, `layer_decay`, ...); None values are ignored.

    Returns:
        The configured `Strategy`.

    Raises:
        ConfigError: an unknown name, or an option the strategy does not take.
    """
    if name not in STRATEGIES:
        raise unknown("strategy", name, sorted(STRATEGIES))
    entry = STRATEGIES[name]
    given = {k: v for k, v in params.items() if v is not None}
    extra = sorted(set(given) - set(entry.params) - {"cut"})
    if extra:
        raise ConfigError(f"strategy {name!r} does not take {', '.join(extra)}; it takes "
                          f"{', '.join(['cut', *entry.params])}.")
    return entry.factory(**given)


__all__ = ["STRATEGIES", "Strategy", "StrategyEntry", "get_strategy", "full", "linear", "llrd", "lp_ft", "lwft",
           "scratch", "strategy_options", "transfusion", "truncated"]
