"""A DICOM series as a volume: one folder holding the slices of one series, via pydicom.

Slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected on the cross
product of the ``ImageOrientationPatient`` axes), never by file name or ``InstanceNumber``, which scanners and
anonymisers renumber; the modality LUT is applied (rescale slope and intercept; CT: Hounsfield units). A folder
holding two series, missing slices or uneven slice spacing is refused, naming the folder.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..text import printable
from .base import Decoded, Item, Reading, check_voxels
from .dicom_common import attribute_value, dicom_files, pydicom_module, read_dataset, slice_positions

SPACING_TOLERANCE = 0.1  # relative spread of slice gaps accepted as even (scanners round positions)


class DicomSeriesReader:
    """The item is a folder (the DICOM file rule of :mod:`.dicom` decides which folders are series)."""

    name = "dicom-series"
    kind = "volume"
    suffixes: tuple[str, ...] = ()

    def accepts(self, path: Path) -> bool:
        return path.is_dir()

    def items(self, files: Sequence[Path], reading: Reading) -> list[Item]:
        return [Item(f, self) for f in files]  # type: ignore[arg-type]

    def read(self, source: Path, reading: Reading = Reading()) -> Decoded:
        volume, spacing, kind = read_dicom_series(source)
        d, h, w = volume.shape
        return Decoded(volume, f"{w}x{h}x{d} {kind.replace(' ', '-')}", spacing)

    def attribute(self, path: Path, keyword: str) -> str:
        """The DICOM attribute ``keyword`` of the series' first file (for --group-by); never printed."""
        return attribute_value(path, keyword)

    def __repr__(self) -> str:
        return f"<{self.name} reader>"


def read_dicom_series(folder: Path) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """One DICOM series as ``(D, H, W)`` float32 after the modality LUT, its spacing (mm, z/y/x) and a format note."""
    pydicom = pydicom_module()
    where = printable(folder)
    files = dicom_files(folder)
    if not files:
        raise DataError(f"{where}: no DICOM files (.dcm, or files marked DICM); a series folder holds the slices of "
                        "one series.")
    slices = [read_dataset(f) for f in files]
    series = Counter(str(getattr(s, "SeriesInstanceUID", "")) for s in slices)
    if len(series) > 1:
        listed = ", ".join(f"{n} slices of series {k + 1}" for k, n in enumerate(series.values()))
        raise DataError(f"{where}: holds {len(series)} DICOM series ({listed}; SeriesInstanceUID differs); put each "
                        "series in a folder of its own.")
    for s, f in zip(slices, files):
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if tag not in s:
                raise DataError(f"{printable(f)}: lacks {tag}, needed to order and space the slices.")
        if int(getattr(s, "NumberOfFrames", 1) or 1) > 1:
            raise DataError(f"{printable(f)}: a multi-frame file ({s.NumberOfFrames} frames) in a series folder; "
                            "medtl reads a volume from single-frame slices, one file each.")
    positions = slice_positions(slices)
    if positions is None:
        raise DataError(f"{where}: the slices have different orientations (ImageOrientationPatient); one series "
                        "folder must hold parallel slices.")
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
    check_voxels(folder, (len(slices), *shapes.pop()))
    try:
        volume = np.stack([pydicom.pixels.apply_modality_lut(s.pixel_array, s).astype(np.float32) for s in slices])
    except Exception as e:  # noqa: BLE001 -- a missing decoder or broken pixel data
        raise DataError(f"{where}: cannot decode the pixel data ({type(e).__name__}: {e}); a compressed series needs "
                        "pip install \"medtl[dicom]\".") from e
    row, col = (float(v) for v in slices[0].PixelSpacing)
    return volume, (step, row, col), f"DICOM {getattr(slices[0], 'Modality', '')}".strip()
