"""What a backbone family is: the explicit protocol every family module implements.

A *family* (ResNet, DenseNet, EfficientNet, ...) knows how to recognise one of its models, where its first
convolution is, and where it can be cut. Optionally it prepares a freshly built model (e.g. turns a functional
activation into a module so it can be kept) and slims the blocks after a cut (TransFusion). The defaults of the
optional methods are explicit: :meth:`BackboneFamily.prepare` does nothing and :meth:`BackboneFamily.slim` raises a
:class:`~medtl.errors.ConfigError` saying the family does not support it, so callers never probe with ``hasattr``.

:func:`stage_cuts` enumerates the cuts of a backbone made of a stem and a list of sequential stages (ResNet's
``layer1..4``, EfficientNet's ``blocks.0..6``): one layer-level cut after every block of a stage and one block-level
cut at each stage end, aliased by the name of its last block.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError
from .cuts import Cut


class BackboneFamily(ABC):
    """One family of CNNs medtl can cut. Subclass it, implement the three abstract methods (and ``slim`` if the
    family supports TransFusion), and add an instance to :data:`medtl.backbones.registry.FAMILIES` (or call
    :func:`medtl.backbones.registry.register_family`)."""

    #: human-readable name, used in error messages ("ResNet")
    name: str = "backbone"

    @abstractmethod
    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` (as built by torchvision/timm) belongs to this family."""

    @abstractmethod
    def first_conv(self, model: nn.Module) -> str:
        """Module path of the first convolution (adapted for non-RGB input)."""

    @abstractmethod
    def cuts(self, model: nn.Module) -> list[Cut]:
        """Every cut point, in execution order, starting with ``stem``."""

    def prepare(self, model: nn.Module) -> None:  # noqa: B027 (an optional hook: most families need no preparation)
        """Make a freshly built model cuttable (in place), before weights are loaded. Default: nothing to do."""

    def slim(self, model: nn.Module, cut: Cut, shrink: int) -> None:
        """TransFusion: rebuild every block after ``cut`` with 1/``shrink`` of its channels, randomly initialised (in
        place). Default: not supported (raises :meth:`slim_unsupported`)."""
        raise self.slim_unsupported(model)

    @property
    def supports_slim(self) -> bool:
        """Whether the family implements :meth:`slim` (TransFusion)."""
        return type(self).slim is not BackboneFamily.slim

    def slim_unsupported(self, model: nn.Module) -> ConfigError:
        """The error for TransFusion on a family without :meth:`slim`."""
        return ConfigError(f"TransFusion (slimming) is not available for {self.name} backbones "
                           f"({type(model).__name__}); use a ResNet or EfficientNet backbone, or another strategy.")

    def __repr__(self) -> str:
        return f"<backbone family {self.name}>"


def stage_cuts(stem: Sequence[str], stages: Sequence[tuple[str, nn.Module]]) -> list[Cut]:
    """Cuts of a backbone made of ``stem`` units followed by sequential ``stages`` (``(path, container)`` pairs whose
    children are indexed ``0..n-1``): ``stem``, then after every block ``{path}.{j}`` (level ``layer``), except that
    the last block of a stage is the stage end ``{path}`` (level ``block``, alias ``{path}.{n-1}``)."""
    units = list(stem)
    found = [Cut("stem", "stem", tuple(units))]
    for path, stage in stages:
        n = len(stage)
        for j in range(n):
            units.append(f"{path}.{j}")
            if j < n - 1:
                found.append(Cut(f"{path}.{j}", "layer", tuple(units)))
            else:
                found.append(Cut(path, "block", tuple(units), aliases=(f"{path}.{j}",)))
    return found
