"""What every reader shares: the options a file is read with, what a read gives back, and the reader protocol.

A reader is one file format (MONAI's ``ImageReader`` is the model: a suffix check and a read). It never imports
torch, so that a server or script can turn a path or uploaded bytes into an array without it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from ...errors import ConfigError, DataError
from ..text import printable

MAX_PIXELS = 50_000_000  # per image; a 7,000 x 7,000 scan fits, a decompression bomb does not
MAX_VOXELS = 512 ** 3  # per volume, before resizing; a whole-body CT at full resolution is below it
#: named windows (centre, width) in the file's units after the modality LUT (CT: Hounsfield units)
WINDOWS = {"brain": (40.0, 80.0), "soft-tissue": (40.0, 400.0), "mediastinum": (50.0, 350.0),
           "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0)}
NO_WINDOW = "none"  # --window none: the full range of the stored bits (DICOM), each volume's min-max (volumes)
DICOM_MODES = ("auto", "2d", "3d")

Source = Path | BinaryIO  # a file, or the bytes of one (an upload) as a binary stream


@dataclass(frozen=True)
class Reading:
    """How files become arrays: an intensity window (centre, width), or ``"none"``, or None for the file's own
    (DICOM) or each volume's min-max; a voxel spacing (mm, z/y/x) for volumes; and how DICOM files are taken:
    ``auto`` (the 2D/3D rule of :mod:`medtl.data.readers.dicom`), ``2d`` or ``3d``."""

    window: tuple[float, float] | str | None = None
    spacing: tuple[float, float, float] | None = None
    dicom: str = "auto"


@dataclass
class Decoded:
    """A decoded file: ``array`` (image ``(H, W, C)`` uint8 or float32 in [0, 1]; volume ``(D, H, W)`` float32 in
    the file's units), its size and mode before any conversion (``"1024x768 L"``, ``"2048x2500 DICOM-DX"``), and a
    volume's voxel spacing (mm, z/y/x)."""

    array: np.ndarray
    format: str
    spacing: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Item:
    """One data set item found among files: a file or a folder (a DICOM series) and the reader that reads it."""

    path: Path
    reader: Reader


class Reader(Protocol):
    """One format. ``kind``: ``image`` (2D), ``volume`` (3D) or ``dataset`` (a whole data set in one file)."""

    name: str
    kind: str
    suffixes: tuple[str, ...]

    def accepts(self, path: Path) -> bool:
        """Whether ``path`` is this reader's format (by suffix; content only where the suffix cannot say)."""

    def items(self, files: Sequence[Path], reading: Reading) -> list[Item]:
        """The data set items among ``files`` (all accepted by this reader): usually one per file."""

    def read(self, source: Source, reading: Reading) -> Decoded:
        """Decode ``source``; a DataError naming the file when it cannot be."""


class SuffixReader:
    """A reader that recognises its files by suffix and makes one item of each (the common case)."""

    name = ""
    kind = "image"
    suffixes: tuple[str, ...] = ()

    def accepts(self, path: Path) -> bool:
        return path.name.lower().endswith(self.suffixes) and not path.name.startswith(".")

    def items(self, files: Sequence[Path], reading: Reading) -> list[Item]:
        return [Item(f, self) for f in files]  # type: ignore[arg-type]

    def read(self, source: Source, reading: Reading) -> Decoded:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.name} reader>"


def parse_window(text: str | None) -> tuple[float, float] | str | None:
    """``--window``: a name of :data:`WINDOWS`, ``CENTER,WIDTH``, or ``none``."""
    if text is None:
        return None
    if text.strip().lower() == NO_WINDOW:
        return NO_WINDOW
    if text.strip().lower() in WINDOWS:
        return WINDOWS[text.strip().lower()]
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"window {text!r} must be CENTER,WIDTH (e.g. 40,400), none, or one of "
                          f"{', '.join(WINDOWS)}.") from None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ConfigError(f"window {text!r}: the centre must be finite and the width positive.")
    return center, width


def source_name(source: Source) -> str:
    """A printable name for messages: the path, or the stream's name (an upload's file name) if it has one."""
    if isinstance(source, Path):
        return printable(source)
    return printable(str(getattr(source, "name", "") or "uploaded image"))


def check_pixels(name: str, width: int, height: int, channels: int = 1) -> None:
    """Refuse an image above :data:`MAX_PIXELS` from its header, before decoding."""
    if width * height > MAX_PIXELS:
        raise DataError(
            f"cannot read image {name}: {width} x {height} pixels is above medtl's limit of {MAX_PIXELS:,} per image "
            f"(decoding it would take {width * height * channels:,} bytes or more before resizing); downscale it "
            "(every image is resized to --image-size anyway) or remove it.")


def check_voxels(path: Path, shape: Sequence[int]) -> None:
    if math.prod(shape) > MAX_VOXELS:
        raise DataError(f"{printable(path)}: {'x'.join(map(str, shape))} voxels is above medtl's limit of "
                        f"{MAX_VOXELS:,} per volume; downsample it first.")

