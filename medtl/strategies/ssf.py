"""SSF, scaling and shifting of features (Lian et al., NeurIPS 2022): a learnt per-channel scale and shift after every
normalisation layer of the frozen network (before its activation), plus the head.

In the CNNs medtl cuts every convolution feeds a normalisation layer whose statistics are frozen here, so a scale and
shift after a convolution would compose with that layer's affine map into one per-channel affine map: SSF after the
normalisation layers covers them. The scale and shift are a :mod:`torch.nn.utils.parametrize` parametrization of the
layer's own weight and bias (``weight * scale``, ``bias * scale + shift``), so merging them for export is removing
the parametrization with its value kept: the merged network is the pretrained architecture, exactly."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from ..model import Classifier
from .base import NORMS, Adapter, Strategy


def ssf(cut: str | None = None) -> Strategy:
    """SSF (Lian et al., NeurIPS 2022): a per-channel scale and shift after every normalisation layer of the frozen
    network, plus the head; merged into the weights for export; with --cut, on the truncated network."""
    return Strategy("ssf", cut=cut, adapter="ssf")


class ScaleShift(nn.Module):
    """The learnt scale (starting at 1) and shift (at 0) of one layer's channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))


class _Scaled(nn.Module):
    def __init__(self, ssf: ScaleShift):
        super().__init__()
        self.ssf = ssf

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.ssf.scale


class _Shifted(_Scaled):
    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        return bias * self.ssf.scale + self.ssf.shift


class SSF(Adapter):
    def attach(self, model: Classifier, strategy: Strategy) -> None:
        norms = [m for m in model.trunk.modules() if isinstance(m, NORMS) and getattr(m, "weight", None) is not None]
        if not norms:
            raise ConfigError("ssf needs normalisation layers with a scale and shift in the kept trunk; this one has "
                              "none (use bitfit or lora).")
        for norm in norms:
            ssf = ScaleShift(norm.weight.shape[0]).to(norm.weight.device)
            parametrize.register_parametrization(norm, "weight", _Scaled(ssf))
            parametrize.register_parametrization(norm, "bias", _Shifted(ssf))

    def trainable(self, model: Classifier) -> Iterable[nn.Parameter]:
        for module in model.trunk.modules():
            if isinstance(module, ScaleShift):
                yield from module.parameters()

    def merge(self, model: Classifier) -> Classifier:
        for module in list(model.trunk.modules()):
            if parametrize.is_parametrized(module):
                for name in ("weight", "bias"):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        return model
