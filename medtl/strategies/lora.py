"""LoRA for convolutions (Hu et al., ICLR 2022; as the ``peft`` library applies it to Conv2d/Conv3d): each dense
convolution of the frozen network gets a low-rank update, a ``rank``-channel convolution with the kernel's size and
stride followed by a 1x1 convolution back to the output channels, plus the head. ``merge_and_unload`` folds the updates
into the kernels for export, so the saved model is the pretrained architecture.

peft adapts plain ``nn.Conv2d``/``nn.Conv3d`` with ``groups=1`` and cannot merge grouped ones, so depthwise
convolutions are left as they are (in EfficientNet they hold about 4% of the weights), and so are timm's
``Conv2dSame`` layers, whose TF-style padding the update's convolution would not reproduce (EfficientNet-Lite's
stem).

The volume convolutions medtl makes for 3D data (:class:`~medtl.backbones.volume.VolumeConv`, whose 3D kernels are
views of one weight) are its own modules, which peft does not know. There the same update is a
:mod:`torch.nn.utils.parametrize` parametrization of the weight, ``W + B A`` with ``A`` of ``rank`` rows over the
kernel's fan-in and ``B`` starting at zero, initialised and scaled as peft does: the layer computes what peft's
update computes when merged, every ACS view sees the updated kernel, and merging is removing the parametrization
with its value kept (stem included, since the update lives in the weight rather than in a parallel convolution)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..backbones.volume import VolumeConv
from ..errors import ConfigError
from ..model import Classifier
from ..optional import require
from .base import Adapter, Strategy

TUNER = "_lora_tuner"  # where the peft tuner is kept on the classifier (outside its modules: it wraps the trunk)


def lora(cut: str | None = None, lora_rank: int = 8) -> Strategy:
    """LoRA for convolutions (Hu et al., ICLR 2022, through peft; on volumes as a parametrization of the kernels): a
    rank-r update of every dense convolution of the frozen network, plus the head; merged into the kernels for
    export; with --cut, on the truncated network."""
    if int(lora_rank) != lora_rank or lora_rank < 1:
        raise ConfigError(f"--lora-rank must be a whole number of at least 1, got {lora_rank}.")
    return Strategy("lora", cut=cut, adapter="lora", lora_rank=int(lora_rank))


def _peft():
    return require("peft", extra="peft", purpose="the lora strategy")


def targets(trunk: nn.Module) -> list[str]:
    """The convolutions LoRA adapts through peft: plain Conv2d/Conv3d with groups=1."""
    return [name for name, m in trunk.named_modules() if type(m) in (nn.Conv2d, nn.Conv3d) and m.groups == 1]


class LowRankUpdate(nn.Module):
    """``weight + B A * alpha / rank`` for a dense kernel of any shape, ``A`` over its fan-in (peft's initialisation:
    Kaiming-uniform ``A``, zero ``B``, so training starts at the pretrained kernel)."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, weight[0].numel(), device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(weight.shape[0], rank, device=weight.device))
        self.scaling = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.lora_B @ self.lora_A).view_as(weight) * self.scaling


def volume_targets(trunk: nn.Module) -> list[VolumeConv]:
    """The volume convolutions LoRA adapts: the dense ones (groups=1), as in 2D."""
    return [m for m in trunk.modules() if isinstance(m, VolumeConv) and m.groups == 1]


class LoRA(Adapter):
    def attach(self, model: Classifier, strategy: Strategy) -> None:
        if model.spec.volume is not None:
            convs = volume_targets(model.trunk)
            if not convs:
                raise ConfigError("lora adapts dense convolutions; this volume trunk has none (use ssf or bitfit).")
            for conv in convs:
                update = LowRankUpdate(conv.weight, strategy.lora_rank, strategy.lora_rank)
                parametrize.register_parametrization(conv, "weight", update)
            return
        peft = _peft()
        names = targets(model.trunk)
        if not names:
            raise ConfigError("lora adapts plain 2D/3D convolutions (through peft); this trunk has none it can adapt "
                              "(no dense convolution); use ssf or bitfit.")
        config = peft.LoraConfig(r=strategy.lora_rank, lora_alpha=strategy.lora_rank, target_modules=names,
                                 lora_dropout=0.0)
        tuner = peft.LoraModel(model.trunk, config, "default")  # injects the LoRA layers into the trunk, in place
        model.__dict__[TUNER] = tuner  # not a submodule: its model is the trunk itself

    def trainable(self, model: Classifier) -> Iterable[nn.Parameter]:
        return (p for n, p in model.trunk.named_parameters() if ".lora_" in n)

    def merge(self, model: Classifier) -> Classifier:
        if model.spec.volume is not None:  # fold each update into its kernel
            for conv in volume_targets(model.trunk):
                if parametrize.is_parametrized(conv, "weight"):
                    parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
            return model
        tuner = model.__dict__.pop(TUNER)
        tuner.merge_and_unload()  # replaces every LoRA layer of the trunk by its base layer, update folded in
        return model
