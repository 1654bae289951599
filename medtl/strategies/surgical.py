"""Surgical fine-tuning (Lee et al., "Surgical Fine-Tuning Improves Adaptation to Distribution Shifts", ICLR 2023):
fine-tune one contiguous group of blocks and freeze the rest of the (whole, or truncated) network.

Truncation and surgical fine-tuning answer the same question from two sides: TruncatedTL drops the layers above the
cut, surgical fine-tuning keeps them frozen and trains one group; ``--cut`` combines them (a truncated network of
which one group trains)."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Strategy


def surgical(cut: str | None = None, tune: str | None = None) -> Strategy:
    """Surgical fine-tuning (Lee et al., ICLR 2023): only the group ``tune`` (a stage such as blocks.1, one block, or
    stem) and the head train; the rest is frozen, BatchNorm statistics included.

    Frozen units before the group run once per image when augmentation is off (the frozen-prefix cache)."""
    if tune is None:
        raise ConfigError("the surgical strategy needs --tune GROUP (a stage such as blocks.1 or layer2, one block "
                          "such as blocks.1.0, or stem): the group of blocks that is fine-tuned.")
    return Strategy("surgical", cut=cut, tune=tune)
