"""Backbones and cut points."""
from .cuts import Cut, Trunk, find_cut
from .registry import (BACKBONES, BackboneSpec, backbone_cuts, create_backbone, get_spec, list_backbones,
                       register_backbone, slim_backbone)

__all__ = [
    "BACKBONES", "BackboneSpec", "Cut", "Trunk", "backbone_cuts", "create_backbone", "find_cut", "get_spec",
    "list_backbones", "register_backbone", "slim_backbone",
]
