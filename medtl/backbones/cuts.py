"""Cut points and truncation: the bottom of a backbone, kept under its original parameter names.

A backbone is seen as an ordered list of *units* (modules run one after the other). A :class:`Cut` names
the point after which everything is discarded. :class:`Trunk` holds only the kept units, so dropped layers
are really gone (absent from ``parameters()``, ``state_dict()`` and the optimizer), while the kept ones keep
the names they have in torchvision/timm (``layer3.3.conv1.weight``), so pretrained state dicts still apply.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import unknown

LEVELS = ("stem", "block", "layer")


@dataclass(frozen=True)
class Cut:
    """A truncation point.

    Attributes:
        name: stable name, e.g. ``stem``, ``layer3.3`` (after the 4th bottleneck of layer3), ``layer3``
            (end of the stage).
        level: ``stem``, ``block`` (a stage end) or ``layer`` (a residual/dense/inverted-residual block
            inside a stage).
        units: module paths kept, in execution order.
        partial: ``(path, n)`` when the last unit is a container cut after its first ``n`` children
            (a dense block cut inside).
        aliases: other accepted names for the same point (``layer1.2`` for ``layer1``).
    """

    name: str
    level: str
    units: tuple[str, ...]
    partial: tuple[str, int] | None = None
    aliases: tuple[str, ...] = ()


class Trunk(nn.Module):
    """The kept units of a backbone, registered under their original paths and run in order."""

    def __init__(self, model: nn.Module, cut: Cut):
        super().__init__()
        if cut.partial is not None:
            path, n = cut.partial
            container = model.get_submodule(path)
            for child in list(container._modules)[n:]:
                del container._modules[child]
        for path in cut.units:
            *parents, leaf = path.split(".")
            owner: nn.Module = self
            for part in parents:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            owner.add_module(leaf, model.get_submodule(path))
        self.units = cut.units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run units ``start`` to ``stop`` (exclusive) only: ``x`` is the output of unit ``start - 1``. Lets a frozen
        prefix be computed once and the rest of the trunk run on its cached output."""
        for path in self.units[start:stop]:
            x = self.get_submodule(path)(x)
        return x


def find_cut(cuts: list[Cut], name: str) -> Cut:
    """The cut called ``name`` (or one of its aliases); a clear error listing valid names otherwise."""
    for cut in cuts:
        if name == cut.name or name in cut.aliases:
            return cut
    raise unknown("cut", name, [c.name for c in cuts])
