"""Features at every cut point from one forward pass: the units are run once, in order, and the output is read
off wherever a cut ends (a cut inside a DenseNet dense block runs only that block's first layers on the side)."""
from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from ..backbones import Cut


def _partial(container: nn.Module, n: int) -> nn.Module:
    """A view of ``container`` that runs only its first ``n`` children (shares their weights)."""
    part = copy.copy(container)
    part._modules = dict(list(container._modules.items())[:n])
    return part


def cut_outputs(model: nn.Module, cuts: list[Cut], x: torch.Tensor) -> Iterator[tuple[Cut, torch.Tensor]]:
    """Yield ``(cut, features)`` for each of ``cuts`` (in execution order) for the batch ``x``, with gradients (a
    multi-exit run trains through them); :func:`walk_cuts` is the same without.

    ``model`` holds the units under their backbone paths: a full backbone or a :class:`~medtl.backbones.Trunk`.
    """
    done = 0
    for cut in cuts:
        prefix = cut.units[:-1] if cut.partial else cut.units
        if list(cut.units[:done]) != list(prefix[:done]):
            raise ValueError(f"cut {cut.name} does not extend the previous cuts; pass cuts in execution order.")
        for path in prefix[done:]:
            x = model.get_submodule(path)(x)
        done = len(prefix)
        if cut.partial:
            path, n = cut.partial
            yield cut, _partial(model.get_submodule(path), n)(x)
        else:
            yield cut, x


walk_cuts = torch.no_grad()(cut_outputs)
walk_cuts.__doc__ = """:func:`cut_outputs` without gradients: the features at every cut from one forward pass."""
