"""Backbones and cut points.

A backbone *name* (``resnet50``, ``efficientnet_lite0``, ``timm:<arch>``) is a :class:`BackboneSpec` in the
registry (:func:`register_backbone`): which library builds it, its input normalisation, its ImageNet weights and a
default cut. A backbone *family* says how any model of one architecture family is cut; it is a
:class:`BackboneFamily` (``family.py``) and implements

- ``name``: for messages ("ResNet");
- ``matches(model) -> bool``: whether a model built by torchvision/timm belongs to the family;
- ``first_conv(model) -> str``: the module path of the first convolution (adapted for grey input);
- ``cuts(model) -> list[Cut]``: every cut point in execution order, starting with ``stem`` (a family whose body
  is a list of sequential stages builds them with :func:`stage_cuts`);
- optionally ``prepare(model)``: make a freshly built model cuttable, before weights load (default: nothing);
- optionally ``slim(model, cut, shrink)``: TransFusion's rebuilding of the blocks after a cut (default: a
  ``ConfigError`` saying the family does not support it).

A new family is one small module (``class MyNet(BackboneFamily): ...`` and ``FAMILY = MyNet()``) plus one entry
in ``registry.FAMILIES`` (or a call to :func:`register_family`); see ``resnet.py`` for a complete example.
"""
from .cuts import Cut, Trunk, find_cut
from .family import BackboneFamily, stage_cuts
from .registry import (BACKBONES, FAMILIES, BackboneSpec, backbone_cuts, create_backbone, family_of, get_spec,
                       list_backbones, register_backbone, register_family, slim_backbone)

__all__ = [
    "BACKBONES", "FAMILIES", "BackboneFamily", "BackboneSpec", "Cut", "Trunk", "backbone_cuts", "create_backbone",
    "family_of", "find_cut", "get_spec", "list_backbones", "register_backbone", "register_family", "slim_backbone",
    "stage_cuts",
]
