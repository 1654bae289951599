"""Data sets held in memory as tensors: MedMNIST (2D and 3D), the built-in BreastMNIST and AdrenalMNIST3D, image and
volume folders, CSV manifests, .npz."""
from __future__ import annotations

import importlib

from .images import IMAGE_EXTENSIONS, read_image

DEFAULT_DATASET = "breastmnist"

# Names imported on first use (PEP 562): reading one image (medtl.data.images, what `medtl serve` decodes uploads
# with) must not load torch, which the data sets need.
_LAZY = {"Preprocess": "augment", "SPLITS": "dataset", "ImageDataset": "dataset", "Split": "dataset",
         "Reading": "readers", "VolumeReading": "volumes", "load_dataset": "load"}

__all__ = [
    "DEFAULT_DATASET",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "ImageDataset",
    "Preprocess",
    "Reading",
    "Split",
    "VolumeReading",
    "load_dataset",
    "read_image",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
