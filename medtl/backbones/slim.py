"""TransFusion's slimming (Raghu et al. 2019, as the TruncatedTL paper ran it): keep the pretrained bottom of a
backbone up to a cut, and rebuild every later block with 1/shrink of its channels, randomly initialised.

The families say which blocks exist and which convolution / normalisation has which width; this module holds
what they share: the rule for a cut inside a stage, and re-widthing a block with fresh weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ConfigError
from .cuts import Cut


def slim_plan(stages: list[list[str]], cut: Cut) -> list[tuple[str, bool]]:
    """``(block path, whole)`` for every block after ``cut``, in order.

    In the stage the cut falls inside, the later blocks shrink only their inner width (``whole=False``): their
    output keeps the stage's full width, so the residual connections of the stage still match. Every later stage
    shrinks whole, output width included. A cut at a stage boundary therefore shrinks the whole next stage.
    """
    kept = set(cut.units)
    plan: list[tuple[str, bool]] = []
    for stage in stages:
        cut_inside = any(block in kept for block in stage)
        plan += [(block, not cut_inside) for block in stage if block not in kept]
    if not plan:
        raise ConfigError(f"nothing follows the cut {cut.name!r}, so there is nothing to slim; choose an earlier cut.")
    return plan


def shrunk(width: int, shrink: int) -> int:
    return max(1, width // shrink)


def fresh_conv(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` (same class, kernel, stride, padding) with new widths and kaiming-normal (fan-out)
    weights; a depthwise convolution stays depthwise."""
    new = copy.copy(conv)
    new._parameters = dict(conv._parameters)
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    new.in_channels, new.out_channels = in_channels, out_channels
    new.groups = out_channels if depthwise else conv.groups
    if in_channels % new.groups or out_channels % new.groups:
        raise ConfigError(f"cannot slim a grouped convolution ({conv.groups} groups) to {in_channels}->{out_channels} "
                          "channels; choose a shrink factor that divides the group width.")
    weight = torch.empty(out_channels, in_channels // new.groups, *conv.kernel_size)
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
    new.weight = nn.Parameter(weight)
    if conv.bias is not None:
        new.bias = nn.Parameter(torch.zeros(out_channels))
    return new


def fresh_norm(norm: nn.BatchNorm2d, channels: int) -> nn.BatchNorm2d:
    """A copy of ``norm`` (same class, eps, momentum, fused activation) for ``channels``: gamma 1, beta 0, fresh
    running statistics."""
    new = copy.copy(norm)
    new._parameters, new._buffers = dict(norm._parameters), dict(norm._buffers)
    new.num_features = channels
    new.weight = nn.Parameter(torch.ones(channels))
    new.bias = nn.Parameter(torch.zeros(channels))
    new.running_mean = torch.zeros(channels)
    new.running_var = torch.ones(channels)
    new.num_batches_tracked = torch.tensor(0, dtype=torch.long)
    return new


def rewidth(block: nn.Module, convs: dict[str, tuple[int, int]], norms: dict[str, int]) -> nn.Module:
    """A randomly initialised copy of ``block`` whose convolutions (path: in, out channels) and BatchNorms
    (path: channels) get the given widths. Every convolution and BatchNorm of the block must be listed, so a block
    type the family does not know fails loudly instead of keeping pretrained weights."""
    new = copy.deepcopy(block)
    layers = {n for n, m in new.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))}
    if layers != set(convs) | set(norms):
        raise ConfigError(f"medtl cannot slim a {type(block).__name__} block (layers {sorted(layers)}); "
                          "TransFusion supports torchvision/timm ResNets and timm EfficientNets.")
    for path, (c_in, c_out) in convs.items():
        _replace(new, path, fresh_conv(new.get_submodule(path), c_in, c_out))
    for path, channels in norms.items():
        _replace(new, path, fresh_norm(new.get_submodule(path), channels))
    return new


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)
