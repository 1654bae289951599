"""Volumes from files (NIfTI, DICOM series: read by :mod:`medtl.data.readers`) as ``(D, H, W)`` float arrays,
stacked, resized to one cube, into ``(N, 1, S, S, S)`` in [0, 1].

Intensities become [0, 1] through ``--window CENTER,WIDTH`` (or a named CT window, :data:`WINDOWS`), else (no
window, or ``none``) by each volume's own minimum and maximum. With ``--spacing`` every volume is first resampled to
that voxel size in mm, so that the final resize to ``--image-size`` keeps the physical proportions of same-sized
fields of view.

nibabel and pydicom are the optional extras ``medtl[3d]`` and ``medtl[dicom]``.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, MedtlWarning
from .readers import MAX_VOXELS, WINDOWS, Reading, parse_window, reader_for
from .readers.dicom_series import read_dicom_series
from .text import printable

VolumeReading = Reading  # the name before 2D DICOM files took a window too

__all__ = ["MAX_VOXELS", "WINDOWS", "VolumeReading", "load_volume", "load_volumes", "parse_window", "read_dicom_series",
           "read_volume", "resize_volume", "to_unit"]


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """A NIfTI file or a DICOM series folder as ``(D, H, W)`` float32, its spacing (mm, z/y/x) and a format note."""
    reader = reader_for(path)
    if reader is None or reader.kind != "volume":
        raise DataError(f"{printable(path)}: not a volume (medtl reads NIfTI files, .nii and .nii.gz, and folders "
                        "holding one DICOM series).")
    decoded = reader.read(path, Reading())
    return decoded.array, decoded.spacing, decoded.format.split(" ", 1)[1]  # type: ignore[return-value]


def to_unit(volume: np.ndarray, window: tuple[float, float] | str | None) -> np.ndarray:
    """Intensities in [0, 1]: through the window (clipped), else (None, ``none``) the volume's own min-max (a flat
    volume: zeros)."""
    if isinstance(window, tuple):
        center, width = window
        return np.clip((volume - (center - width / 2)) / width, 0, 1)
    lo, hi = float(volume.min()), float(volume.max())
    return (volume - lo) / (hi - lo) if hi > lo else np.zeros_like(volume)


def resize_volume(volume: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(C, D, H, W)`` resized to ``shape``: area averaging when every axis shrinks, else trilinear."""
    if tuple(volume.shape[1:]) == tuple(shape):
        return volume
    shrink = all(s <= v for s, v in zip(shape, volume.shape[1:]))
    mode = "area" if shrink else "trilinear"
    return F.interpolate(volume[None], size=tuple(shape), mode=mode,
                         **({} if shrink else {"align_corners": False}))[0]


def load_volume(path: Path, size: int, reading: Reading) -> tuple[torch.Tensor, str]:
    """One volume as ``(1, size, size, size)`` float32 in [0, 1] and its format (``"W x H x D kind"``)."""
    reader = reader_for(path)
    if reader is None or reader.kind != "volume":
        read_volume(path)  # raises: not a volume
    decoded = reader.read(path, reading)  # type: ignore[union-attr]
    volume = decoded.array
    if not np.isfinite(volume).all():
        raise DataError(f"{printable(path)}: holds NaN or infinite values; fix or remove the volume.")
    x = torch.from_numpy(to_unit(volume, reading.window).astype(np.float32))[None]
    if reading.spacing is not None:
        x = resize_volume(x, [max(1, round(n * s / t)) for n, s, t in
                              zip(x.shape[1:], decoded.spacing, reading.spacing)])  # type: ignore[arg-type]
    return resize_volume(x, (size,) * 3).clamp_(0, 1), decoded.format


def load_volumes(paths: Sequence[Path], size: int, skip_bad: bool = False, reading: Reading = Reading()
                 ) -> tuple[torch.Tensor, dict[int, str], list[str]]:
    """Read and stack volumes into ``(N, 1, size, size, size)``, like :func:`medtl.data.images.load_images` for
    images: unreadable ones fail together (one error naming the first, counting the rest) or, with ``skip_bad``, are
    left out and returned as ``{index: reason}``. Volumes of different shapes are all resized, with a note."""
    volumes, formats, bad = [], [], {}
    for i, path in enumerate(paths):
        try:
            x, fmt = load_volume(path, size, reading)
        except DataError as e:
            bad[i] = str(e)
            continue
        volumes.append(x)
        formats.append(fmt)
    if bad and not skip_bad:
        first, *rest = bad
        listed = ", ".join(printable(paths[i]) for i in rest[:5]) + (", ..." if len(rest) > 5 else "")
        others = f" {len(rest)} more volume(s) cannot be read either: {listed}." if rest else ""
        raise DataError(f"{bad[first]}{others} To leave unreadable volumes out and list them, pass --skip-bad-images.")
    if not volumes:
        raise DataError(f"none of the {len(paths)} volumes can be read, e.g. {bad[0]}")
    shapes = Counter(f.split(" ")[0] for f in formats)
    if len(shapes) > 1:
        hint = "" if reading.spacing else " (pass --spacing to resample them to one voxel size first)"
        warnings.warn(f"the volumes have {len(shapes)} different shapes (most common {shapes.most_common(1)[0][0]}); "
                      f"each is resized to {size}x{size}x{size}{hint}.", MedtlWarning, stacklevel=2)
    return torch.stack(volumes), bad, formats
