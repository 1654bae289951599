"""BitFit (Ben Zaken et al., ACL 2022), for CNNs: only the biases and the normalisation layers' scales and shifts train,
plus the head; every other weight and the BatchNorm statistics stay the shared pretrained ones."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..model import Classifier
from .base import NORMS, Adapter, Strategy


def bitfit(cut: str | None = None) -> Strategy:
    """BitFit (Ben Zaken et al., ACL 2022): only biases and normalisation scales/shifts train (BatchNorm statistics
    frozen), plus the head; with --cut, on the truncated network."""
    return Strategy("bitfit", cut=cut, adapter="bitfit")


class BitFit(Adapter):
    def trainable(self, model: Classifier) -> Iterable[nn.Parameter]:
        for module in model.trunk.modules():
            if isinstance(module, NORMS):
                yield from module.parameters(recurse=False)
            elif getattr(module, "bias", None) is not None and isinstance(module.bias, nn.Parameter):
                yield module.bias
