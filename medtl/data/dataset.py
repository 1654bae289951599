"""The in-memory data set: three splits of stacked image tensors, their labels and where they came from.

Everything is held as tensors so that the training loop can index batches directly (no per-image PIL work per epoch).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import DataError, unknown

SPLITS = ("train", "val", "test")
TASKS = ("binary", "multiclass", "multilabel")


@dataclass
class Split:
    """One split: images ``(N, C, H, W)``, or volumes ``(N, C, D, H, W)``, uint8 in 0..255 (or float32 in [0, 1] for
    16-bit and volume-file sources) and labels.

    Labels are ``(N,)`` int64 class indices, or ``(N, L)`` float32 0/1 for multi-label tasks. Per image, in the
    same order (so that predictions, leakage reports and resplits can name images):

    - ``ids``: where the image came from. Folders: the file path relative to the data root
      (``train/NORMAL/x.jpeg``); CSV manifests: the path as written in the CSV; arrays (MedMNIST, ``.npz``):
      ``"<split>[<index>]"`` of the source split (``test[17]``). None here means "not known"; :class:`ImageDataset`
      fills such splits with ``"<split>[<index>]"``.
    - ``groups``: the patient/study id of a CSV ``group`` column, or the salted hash of a DICOM attribute
      (``--group-by PatientID``), or None; drawn splits keep each group on one side.
    - ``formats``: the file's size and mode before resizing (``"1024x768 L"``), or None for arrays; the leakage
      check reports rare ones.
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str] | None = None
    groups: list[str] | None = None
    formats: list[str] | None = None

    def __post_init__(self) -> None:
        if self.images.ndim not in (4, 5):
            raise DataError(f"split images must have shape (N, C, H, W) or, for volumes, (N, C, D, H, W), got "
                            f"{tuple(self.images.shape)}")
        if self.images.dtype not in (torch.uint8, torch.float32):
            raise DataError(f"split images must be uint8 or float32, got {self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise DataError(f"split has {len(self.images)} images but {len(self.labels)} labels")
        for name in ("ids", "groups", "formats"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.images):
                raise DataError(f"split has {len(self.images)} images but {len(values)} {name}")

    def take(self, index: Sequence[int] | np.ndarray) -> Split:
        """The images at ``index`` (in that order), with their labels, ids, groups and formats."""
        index = np.asarray(index, dtype=np.int64)
        pick = torch.from_numpy(index)

        def sub(values: list[str] | None) -> list[str] | None:
            return None if values is None else [values[i] for i in index]

        return Split(self.images[pick], self.labels[pick], sub(self.ids), sub(self.groups), sub(self.formats))

    @staticmethod
    def concat(splits: Sequence[Split]) -> Split:
        """One split holding ``splits`` in order; a per-image list known for only some of them becomes None."""

        def joined(name: str) -> list[str] | None:
            parts = [getattr(s, name) for s in splits]
            return None if any(p is None for p in parts) else [v for p in parts for v in p]

        return Split(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]), joined("ids"),
                     joined("groups"), joined("formats"))

    def __len__(self) -> int:
        return self.images.shape[0]

    def float_images(self, idx: Any = None) -> torch.Tensor:
        """``images[idx]`` as float32 in [0, 1]; uint8 images are divided by 255 (a new tensor, never a view)."""
        x = self.images if idx is None else self.images[idx]
        return x.float().div_(255) if x.dtype == torch.uint8 else x.clone()


@dataclass
class ImageDataset:
    """A classification data set with fixed train/val/test splits that share one image shape and dtype.

    ``source`` records provenance: ``kind`` ("medmnist" | "builtin" | "folder" | "csv" | "npz"), ``path``,
    ``md5`` (None where no single file exists), ``license`` and ``citation`` (None where unknown), plus
    kind-specific entries such as ``url`` or ``seed``. How the splits came about is always recorded:
    ``splits`` maps each split to "given" or how it was drawn (``{"train": "given", "val": "drawn from train (11.1%,
    stratified, seed 0, not grouped)", "test": "given"}``), ``split_note`` says the same in a sentence, and
    ``split`` holds the train/val/test fractions that were used, or None when every split was given.
    ``skipped`` holds one message (naming the file and
    the reason) per file left out as unreadable, when loading was asked to skip such files.
    """

    name: str
    task: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    source: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in SPLITS:
            split = self.split(name)
            if split.ids is None:
                split.ids = [f"{name}[{i}]" for i in range(len(split))]
        if self.task not in TASKS:
            raise DataError(f"data set {self.name!r}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        ref = self.train.images
        for name in SPLITS:
            images = self.split(name).images
            if images.shape[1:] != ref.shape[1:] or images.dtype != ref.dtype:
                raise DataError(
                    f"data set {self.name!r}: split {name!r} has images {tuple(images.shape[1:])} {images.dtype}, "
                    f"but train has {tuple(ref.shape[1:])} {ref.dtype}; all splits must share one shape and dtype"
                )

    @property
    def num_classes(self) -> int:
        """Number of classes (or of labels, for multi-label tasks)."""
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of every image, or ``(C, D, H, W)`` of every volume."""
        return tuple(self.train.images.shape[1:])

    @property
    def is_volume(self) -> bool:
        """Whether the items are volumes ``(C, D, H, W)`` rather than 2D images."""
        return self.train.images.ndim == 5

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise unknown("split", name, list(SPLITS))
        return getattr(self, name)

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class in ``split`` (for multi-label: positives per label), in class index order."""
        labels = self.split(split).labels
        if self.task == "multilabel":
            return labels.sum(0).round().long().tolist()
        return torch.bincount(labels, minlength=self.num_classes).tolist()
