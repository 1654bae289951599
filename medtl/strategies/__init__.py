"""Transfer strategies of the paper (and two beyond it), each a configuration of :class:`Strategy`.

A new strategy is a factory function here (or in its own small module) plus a registry entry.
"""
from __future__ import annotations

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


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "truncated": truncated,
    "full": full,
    "scratch": scratch,
    "linear": linear,
    "lwft": lwft,
    "llrd": llrd,
    "lp-ft": lp_ft,
    "transfusion": transfusion,
}

# The option each strategy's cut point sets, for grids over cuts (``medtl compare``); the others have no cut axis.
CUT_OPTION: dict[str, str] = {"truncated": "cut", "lwft": "freeze_to", "transfusion": "slim_from"}


def get_strategy(name: str, **params) -> Strategy:
    """The strategy ``name`` configured with ``params`` (``None`` values are ignored)."""
    if name not in STRATEGIES:
        raise unknown("strategy", name, sorted(STRATEGIES))
    factory = STRATEGIES[name]
    import inspect

    accepted = inspect.signature(factory).parameters
    given = {k: v for k, v in params.items() if v is not None}
    extra = sorted(set(given) - set(accepted))
    if extra:
        raise ConfigError(f"strategy {name!r} does not take {', '.join(extra)}; it takes {', '.join(accepted) or 'nothing'}.")
    return factory(**given)


__all__ = ["CUT_OPTION", "STRATEGIES", "Strategy", "get_strategy", "full", "linear", "llrd", "lp_ft", "lwft", "scratch",
           "transfusion", "truncated"]
