"""Volumes from files: NIfTI (``.nii``, ``.nii.gz``, via nibabel) and DICOM series (one series per folder, via
pydicom), read into ``(D, H, W)`` float arrays and stacked, resized to one cube, into ``(N, 1, S, S, S)`` in [0, 1].

DICOM slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected on the cross
product of the ``ImageOrientationPatient`` axes), never by file name or ``InstanceNumber``, which scanners and
anonymisers renumber; the rescale slope and intercept are applied (CT: Hounsfield units). A folder holding two series,
missing slices or uneven slice spacing is refused, naming the folder. NIfTI volumes are reoriented to the closest
canonical (RAS) axes and read as ``(z, y, x)``; a 4D file (a time series) is refused.

Intensities become [0, 1] through ``--window CENTER,WIDTH`` (or a named CT window, :data:`WINDOWS`), else by each
volume's own minimum and maximum. With ``--spacing`` every volume is first resampled to that voxel size in mm, so
that the final resize to ``--image-size`` keeps the physical proportions of same-sized fields of view.

nibabel and pydicom are the optional extra ``medtl[3d]``.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError, MedtlWarning
from ..optional import require
from .text import printable

#: named CT windows (centre, width) in Hounsfield units
WINDOWS = {"brain": (40.0, 80.0), "soft-tissue": (40.0, 400.0), "mediastinum": (50.0, 350.0),
           "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0)}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_VOXELS = 512 ** 3  # per volume, before resizing; a whole-body CT at full resolution is below it
SPACING_TOLERANCE = 0.1  # relative spread of slice gaps accepted as even (scanners round positions)


@dataclass(frozen=True)
class VolumeReading:
    """How volume files become tensors: an intensity window (centre, width) and a voxel spacing (mm, z/y/x)."""

    window: tuple[float, float] | None = None
    spacing: tuple[float, float, float] | None = None


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``--window``: a name of :data:`WINDOWS` or ``CENTER,WIDTH``."""
    if text is None:
        return None
    if text.strip().lower() in WINDOWS:
        return WINDOWS[text.strip().lower()]
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"window {text!r} must be CENTER,WIDTH (e.g. 40,400) or one of {', '.join(WINDOWS)}.") \
            from None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ConfigError(f"window {text!r}: the centre must be finite and the width positive.")
    return center, width


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES) and not path.name.startswith(".")


def is_dicom(path: Path) -> bool:
    """A DICOM file by extension (``.dcm``) or, without an extension, by the ``DICM`` marker at byte 128."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    if path.suffix:
        return False
    with path.open("rb") as f:
        return f.read(132)[128:] == b"DICM"


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """A NIfTI file or a DICOM series folder as ``(D, H, W)`` float32, its spacing (mm, z/y/x) and a format note."""
    if path.is_dir():
        return read_dicom_series(path)
    if is_nifti(path):
        return read_nifti(path)
    raise DataError(f"{printable(path)}: not a volume (medtl reads NIfTI files, {', '.join(NIFTI_SUFFIXES)}, and "
                    "folders holding one DICOM series).")


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float, float], str]:
    nib = require("nibabel", extra="3d", purpose="reading NIfTI volumes")
    try:
        image = nib.load(path)
        if len(image.shape) != 3:
            raise DataError(f"{printable(path)}: a NIfTI volume of {len(image.shape)} dimensions {image.shape}; medtl "
                            "classifies 3D volumes, so give one 3D volume per file (split a time series or "
                            "multi-channel file into its volumes).")
        _check_size(path, image.shape)
        image = nib.as_closest_canonical(image)
        data = np.asarray(image.dataobj, dtype=np.float32)
        zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- nibabel raises many types for a bad file
        raise DataError(f"{printable(path)}: cannot read as NIfTI ({type(e).__name__}: {e}); replace the file.") \
            from e
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))  # (x, y, z) -> (z, y, x)
    return volume, (zooms[2], zooms[1], zooms[0]), "NIfTI"


def read_dicom_series(folder: Path) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """One DICOM series: slices ordered along the slice normal, rescaled, with its spacing (see the module doc)."""
    pydicom = require("pydicom", extra="3d", purpose="reading DICOM series")
    where = printable(folder)
    files = sorted(f for f in folder.iterdir() if is_dicom(f))
    if not files:
        raise DataError(f"{where}: no DICOM files (.dcm, or files marked DICM); a series folder holds the slices of "
                        "one series.")
    slices = []
    for f in files:
        try:
            slices.append(pydicom.dcmread(f))
        except Exception as e:  # noqa: BLE001 -- pydicom raises many types for a bad file
            raise DataError(f"{printable(f)}: cannot read as DICOM ({type(e).__name__}: {e}); replace or remove it.") \
                from e
    series = Counter(str(getattr(s, "SeriesInstanceUID", "")) for s in slices)
    if len(series) > 1:
        listed = ", ".join(f"{n} slices of {uid}" for uid, n in series.items())
        raise DataError(f"{where}: holds {len(series)} DICOM series ({listed}); put each series in a folder of its "
                        "own.")
    for s, f in zip(slices, files):
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if tag not in s:
                raise DataError(f"{printable(f)}: lacks {tag}, needed to order and space the slices.")
    orientation = np.array(slices[0].ImageOrientationPatient, dtype=np.float64)
    if any(not np.allclose(np.array(s.ImageOrientationPatient, dtype=np.float64), orientation, atol=1e-4)
           for s in slices):
        raise DataError(f"{where}: the slices have different orientations (ImageOrientationPatient); one series "
                        "folder must hold parallel slices.")
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.dot(np.array(s.ImagePositionPatient, dtype=np.float64), normal) for s in slices])
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    slices = [slices[i] for i in order]
    files = [files[i] for i in order]
    gaps = np.diff(positions)
    if len(slices) > 1:
        if (gaps < 1e-3).any():
            k = int(np.argmax(gaps < 1e-3))
            raise DataError(f"{where}: {printable(files[k].name)} and {printable(files[k + 1].name)} lie at the same "
                            "position; remove duplicate slices (or split two series).")
        step = float(np.median(gaps))
        if (np.abs(gaps - step) > SPACING_TOLERANCE * step).any():
            k = int(np.argmax(np.abs(gaps - step) > SPACING_TOLERANCE * step))
            missing = gaps[k] > 1.5 * step
            raise DataError(f"{where}: {'missing slices' if missing else 'uneven slice spacing'}: {gaps[k]:.3g} mm "
                            f"between {printable(files[k].name)} and {printable(files[k + 1].name)}, where the series' "
                            f"slices are {step:.3g} mm apart; give the complete series with even spacing.")
    else:
        step = float(getattr(slices[0], "SliceThickness", 1.0) or 1.0)
    shapes = {(int(s.Rows), int(s.Columns)) for s in slices}
    if len(shapes) > 1:
        raise DataError(f"{where}: the slices have different sizes {sorted(shapes)}; one series has one size.")
    _check_size(folder, (len(slices), *shapes.pop()))
    try:
        volume = np.stack([s.pixel_array.astype(np.float32) * float(getattr(s, "RescaleSlope", 1) or 1)
                           + float(getattr(s, "RescaleIntercept", 0) or 0) for s in slices])
    except Exception as e:  # noqa: BLE001 -- a missing decoder or broken pixel data
        raise DataError(f"{where}: cannot decode the pixel data ({type(e).__name__}: {e}).") from e
    row, col = (float(v) for v in slices[0].PixelSpacing)
    return volume, (step, row, col), f"DICOM {getattr(slices[0], 'Modality', '')}".strip()


def to_unit(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Intensities in [0, 1]: through the window (clipped), else the volume's own min-max (a flat volume: zeros)."""
    if window is not None:
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


def load_volume(path: Path, size: int, reading: VolumeReading) -> tuple[torch.Tensor, str]:
    """One volume as ``(1, size, size, size)`` float32 in [0, 1] and its format (``"W x H x D kind"``)."""
    volume, spacing, kind = read_volume(path)
    if not np.isfinite(volume).all():
        raise DataError(f"{printable(path)}: holds NaN or infinite values; fix or remove the volume.")
    x = torch.from_numpy(to_unit(volume, reading.window).astype(np.float32))[None]
    if reading.spacing is not None:
        x = resize_volume(x, [max(1, round(n * s / t)) for n, s, t in zip(x.shape[1:], spacing, reading.spacing)])
    d, h, w = volume.shape
    return resize_volume(x, (size,) * 3).clamp_(0, 1), f"{w}x{h}x{d} {kind.replace(' ', '-')}"


def load_volumes(paths: Sequence[Path], size: int, skip_bad: bool = False, reading: VolumeReading = VolumeReading()
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


def _check_size(path: Path, shape: Sequence[int]) -> None:
    if math.prod(shape) > MAX_VOXELS:
        raise DataError(f"{printable(path)}: {'x'.join(map(str, shape))} voxels is above medtl's limit of "
                        f"{MAX_VOXELS:,} per volume; downsample it first.")
