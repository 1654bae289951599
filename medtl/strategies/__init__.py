"""Transfer strategies of the paper and the methods that came after it, each a configuration of :class:`Strategy`.

A new strategy is a factory function here (or in its own small module) plus a registry entry; a parameter-efficient
method also registers its :class:`Adapter` in :data:`ADAPTERS`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError, unknown
from ..optional import available
from .base import ADAPTERS, Adapter, Strategy
from .bitfit import BitFit, bitfit
from .head2toe import head2toe
from .lora import LoRA, lora
from .ssf import SSF, ssf
from .surgical import surgical
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


def auto_rgn(cut: str | None = None) -> Strategy:
    """Auto-RGN (Lee et al., ICLR 2023): every weight tensor trains at lr x its relative gradient norm ||g||/||w||,
    normalised by the largest, re-measured on the first 5 batches of each epoch; normalisation parameters frozen.

    The rates are set by :class:`medtl.strategies.autorgn.RelativeGradientNorm`."""
    return Strategy("auto-rgn", cut=cut, rgn=True)


@dataclass(frozen=True)
class StrategyEntry:
    """A registered strategy: its factory (whose keyword parameters, defaults included, are the strategy's
    options), its short name in the paper's table, its matplotlib colour on every figure (a comparison's curves, a
    report's, Grad-CAM's labels), and the option its cut axis sets in a grid (``medtl compare``)."""

    factory: Callable[..., Strategy]
    label: str
    colour: str
    cut_option: str | None = None
    requires: str | None = None  # the optional module it needs (peft for lora), installed with medtl[extra]

    @property
    def available(self) -> bool:
        """Whether the optional module it needs is installed."""
        return self.requires is None or available(self.requires)

    @property
    def params(self) -> list[str]:
        """The options this strategy takes besides ``cut``."""
        return [p for p in inspect.signature(self.factory).parameters if p != "cut"]

    @property
    def summary(self) -> str:
        """The first sentence of the factory's docstring, unwrapped, without reST markup."""
        text = " ".join((self.factory.__doc__ or "").split("\n\n")[0].split())
        return text.replace("``", "")


# In the order of the paper's table. Colours: the strategies with a cut axis take the first colours of matplotlib's
# cycle, the references (full, linear) the greys of the comparison's reference lines.
STRATEGIES: dict[str, StrategyEntry] = {
    "full": StrategyEntry(full, "FTL", "0.25"),
    "linear": StrategyEntry(linear, "linear", "0.6"),
    "lwft": StrategyEntry(lwft, "LWFT", "C1", cut_option="freeze_to"),
    "transfusion": StrategyEntry(transfusion, "TF", "C2", cut_option="slim_from"),
    "truncated": StrategyEntry(truncated, "TTL", "C0", cut_option="cut"),
    "scratch": StrategyEntry(scratch, "scratch", "C4"),
    "llrd": StrategyEntry(llrd, "LLRD", "C5"),
    "lp-ft": StrategyEntry(lp_ft, "LP-FT", "C6"),
    # beyond the paper: layer-selective and parameter-efficient methods (docs/guide/beyond-the-paper.md)
    "surgical": StrategyEntry(surgical, "surgical", "C3", cut_option="tune"),
    "auto-rgn": StrategyEntry(auto_rgn, "Auto-RGN", "C8"),
    "bitfit": StrategyEntry(bitfit, "BitFit", "C9", cut_option="cut"),
    "ssf": StrategyEntry(ssf, "SSF", "#66a61e", cut_option="cut"),
    "lora": StrategyEntry(lora, "LoRA", "#e6ab02", cut_option="cut", requires="peft"),
    "head2toe": StrategyEntry(head2toe, "Head2Toe", "#7570b3", cut_option="cut"),
}
ADAPTERS.update({"bitfit": BitFit(), "ssf": SSF(), "lora": LoRA()})
OTHER_COLOUR = "C7"  # a strategy name this version does not know (a run written by another version)


def label_of(name: str) -> str:
    """The paper's short name of strategy ``name`` (TTL, FTL, ...); an unknown name as it is."""
    entry = STRATEGIES.get(name)
    return entry.label if entry else name


def colour_of(name: str) -> str:
    """The colour of strategy ``name`` on every figure."""
    entry = STRATEGIES.get(name)
    return entry.colour if entry else OTHER_COLOUR


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


__all__ = ["ADAPTERS", "Adapter", "STRATEGIES", "Strategy", "StrategyEntry", "auto_rgn", "bitfit", "colour_of",
           "full", "get_strategy", "head2toe", "label_of", "linear", "llrd", "lora", "lp_ft", "lwft", "scratch", "ssf",
           "strategy_options", "surgical", "transfusion", "truncated"]
