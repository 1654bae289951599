"""EfficientNet / EfficientNet-Lite (timm): cuts after the stem, after every inverted-residual block, at
every stage end (``blocks.S``), and after the final 1x1 ``conv_head`` (the full feature extractor)."""
from __future__ import annotations

from torch import nn

from .cuts import Cut


def matches(model: nn.Module) -> bool:
    return all(hasattr(model, n) for n in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"))


def first_conv(model: nn.Module) -> str:
    return "conv_stem"


def cuts(model: nn.Module) -> list[Cut]:
    units = ["conv_stem", "bn1"]
    found = [Cut("stem", "stem", tuple(units))]
    for s, stage in enumerate(model.blocks):
        n = len(stage)
        for j in range(n):
            units.append(f"blocks.{s}.{j}")
            if j < n - 1:
                found.append(Cut(f"blocks.{s}.{j}", "layer", tuple(units)))
            else:
                found.append(Cut(f"blocks.{s}", "block", tuple(units), aliases=(f"blocks.{s}.{j}",)))
    units += ["conv_head", "bn2"]
    found.append(Cut("conv_head", "block", tuple(units), aliases=("bn2",)))
    return found
