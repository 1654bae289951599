"""What the DICOM readers share (:mod:`.dicom` for single images and the 2D/3D rule, :mod:`.dicom_series` for
volumes): finding DICOM files, reading headers, frame counts, slice positions and attributes, all through pydicom."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..text import printable
from ...optional import require
from .base import Source, source_name

SUFFIXES = (".dcm", ".dicom")


def pydicom_module():
    """pydicom, with its pixel pipeline (``pydicom.pixels``) loaded."""
    pydicom = require("pydicom", extra="dicom", purpose="reading DICOM files")
    require("pydicom.pixels", extra="dicom", purpose="reading DICOM files")
    return pydicom


def is_dicom(path: Path) -> bool:
    """A DICOM file by extension (``.dcm``, ``.dicom``) or, without an extension, by the ``DICM`` marker at byte
    128."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.name.lower().endswith(SUFFIXES):
        return True
    if path.suffix:
        return False
    with path.open("rb") as f:
        return f.read(132)[128:] == b"DICM"


def dicom_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if is_dicom(f))


def read_dataset(source: Source, pixels: bool = True):
    """The pydicom Dataset of ``source`` (without pixel data unless ``pixels``); a DataError for a bad file."""
    pydicom = pydicom_module()
    try:
        return pydicom.dcmread(source, stop_before_pixels=not pixels)
    except Exception as e:  # noqa: BLE001 -- pydicom raises many types for a bad file
        raise DataError(f"{source_name(source)}: cannot read as DICOM ({type(e).__name__}: {e}); replace or remove "
                        "it.") from e


def frames(ds) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def attribute_value(path: Path, keyword: str) -> str:
    """The DICOM attribute ``keyword`` of the file ``path``, or of a series folder's first file."""
    pydicom = pydicom_module()
    if pydicom.datadict.tag_for_keyword(keyword) is None:
        raise DataError(f"--group-by {keyword!r} is neither a column of a CSV manifest nor a DICOM attribute keyword "
                        "(e.g. PatientID, StudyInstanceUID; spelled as in the DICOM dictionary).")
    ds = read_dataset(dicom_files(path)[0] if path.is_dir() else path, pixels=False)
    value = str(ds.get(keyword, "") or "").strip()
    if not value:
        raise DataError(f"{printable(path)}: the DICOM attribute {keyword} is missing or empty, so the file cannot be "
                        f"grouped by it; fill it in, or group by another attribute (PatientID, StudyInstanceUID).")
    return value


def slice_positions(slices: Sequence) -> np.ndarray | None:
    """Each slice's position along the common slice normal, or None when the slices lack a position or an
    orientation, or are not parallel."""
    if not slices or any("ImagePositionPatient" not in s or "ImageOrientationPatient" not in s for s in slices):
        return None
    try:
        orientation = np.array(slices[0].ImageOrientationPatient, dtype=np.float64)
        if orientation.shape != (6,) or any(
                not np.allclose(np.array(s.ImageOrientationPatient, dtype=np.float64), orientation, atol=1e-4)
                for s in slices):
            return None
        normal = np.cross(orientation[:3], orientation[3:])
        return np.array([np.dot(np.array(s.ImagePositionPatient, dtype=np.float64), normal) for s in slices])
    except (TypeError, ValueError):
        return None
