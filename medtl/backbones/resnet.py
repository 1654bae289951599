"""ResNet (torchvision and timm): cuts after the stem, after every residual block, at every stage end."""
from __future__ import annotations

from torch import nn

from .cuts import Cut


def matches(model: nn.Module) -> bool:
    return all(hasattr(model, n) for n in ("conv1", "bn1", "maxpool", "layer1", "layer4"))


def first_conv(model: nn.Module) -> str:
    return "conv1"


def cuts(model: nn.Module) -> list[Cut]:
    act = "relu" if hasattr(model, "relu") else "act1"
    units: list[str] = ["conv1", "bn1", act, "maxpool"]
    found = [Cut("stem", "stem", tuple(units))]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        n = len(getattr(model, stage))
        for j in range(n):
            units.append(f"{stage}.{j}")
            if j < n - 1:
                found.append(Cut(f"{stage}.{j}", "layer", tuple(units)))
            else:
                found.append(Cut(stage, "block", tuple(units), aliases=(f"{stage}.{j}",)))
    return found
