"""DenseNet (torchvision): a block is a dense block with its transition, as in the paper; a layer is one
dense layer (a cut inside a dense block keeps its first layers and their concatenated features)."""
from __future__ import annotations

from torch import nn

from .cuts import Cut
from .family import BackboneFamily


class DenseNet(BackboneFamily):
    """No TransFusion: :meth:`BackboneFamily.slim` raises a ConfigError."""

    name = "DenseNet"

    def matches(self, model: nn.Module) -> bool:
        features = getattr(model, "features", None)
        return features is not None and hasattr(features, "denseblock1") and hasattr(features, "conv0")

    def first_conv(self, model: nn.Module) -> str:
        return "features.conv0"

    def prepare(self, model: nn.Module) -> None:
        """torchvision applies the final ReLU functionally in ``forward()``; make it a unit that can be kept."""
        if not hasattr(model.features, "relu5"):
            model.features.add_module("relu5", nn.ReLU(inplace=True))

    def cuts(self, model: nn.Module) -> list[Cut]:
        f = model.features
        units = ["features.conv0", "features.norm0", "features.relu0", "features.pool0"]
        found = [Cut("stem", "stem", tuple(units))]
        b = 1
        while hasattr(f, f"denseblock{b}"):
            block = f"features.denseblock{b}"
            layers = list(getattr(f, f"denseblock{b}")._modules)
            for k, layer in enumerate(layers, start=1):
                found.append(Cut(f"denseblock{b}.{layer}", "layer", (*units, block), partial=(block, k)))
            units.append(block)
            tail = [f"features.transition{b}"] if hasattr(f, f"transition{b}") else ["features.norm5", "features.relu5"]
            units.extend(tail)
            found.append(Cut(f"denseblock{b}", "block", tuple(units), aliases=(tail[0].split(".")[1],)))
            b += 1
        return found


FAMILY = DenseNet()
