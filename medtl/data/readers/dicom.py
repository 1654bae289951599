"""Single-image DICOM files (radiographs, mammograms, ultrasound frames, secondary captures) read as a viewer shows
them, and the rule that tells 2D images from the slices of a volume.

The pixel pipeline, in this order, with pydicom's own functions (:mod:`pydicom.pixels`):

1. decode (``ds.pixel_array``; compressed transfer syntaxes through pydicom's plugins: pylibjpeg, -libjpeg,
   -openjpeg, -rle); YBR colour comes back as RGB;
2. grey images: the modality LUT (``apply_modality_lut``: RescaleSlope/RescaleIntercept or a Modality LUT
   Sequence);
3. VOI: by default the file's own first window (WindowCenter/WindowWidth) or VOI LUT Sequence (``apply_voi_lut``,
   which prefers the LUT when a file has both); ``--window CENTER,WIDTH`` or a named window replaces it
   (``apply_windowing`` with the DICOM LINEAR function); ``--window none``, or a file without either, takes the
   full range of the stored bits after the modality LUT (``BitsStored``, ``PixelRepresentation``), the same range
   for every file of that kind, never each image's own min-max, so intensities stay comparable across images;
4. to [0, 1] over the VOI output range, ``MONOCHROME1`` inverted (higher is brighter, as for ``MONOCHROME2``);
5. colour: RGB (YBR converted, PALETTE COLOR through its LUT) scaled by its stored bits: 8-bit stays uint8.

A multi-frame file (an ultrasound cine, a tomosynthesis stack) is refused: never silently its first frame.

The 2D/3D rule (:meth:`DicomReader.items`; ``--dicom auto``): the DICOM files of one folder that share one
SeriesInstanceUID, with parallel ImageOrientationPatient and distinct ImagePositionPatient along the slice normal
(at least two files), are one volume; other single-frame files of projection modalities (:data:`PROJECTION`) are
2D images; anything else is refused, naming the files. ``--dicom 2d`` reads every single-frame file as an image,
``--dicom 3d`` (implied by ``--volume``) every folder of DICOM files as one series.
"""
from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import DataError, MedtlWarning
from ..text import printable
from .base import Decoded, Item, Reading, Source, SuffixReader, check_pixels, source_name
from .dicom_common import (SUFFIXES, attribute_value, frames, is_dicom, pydicom_module, read_dataset,
                           slice_positions)
from .dicom_series import DicomSeriesReader

log = logging.getLogger("medtl")

#: modalities whose single-frame files are 2D images: radiography (CR, DX), mammography, fluoroscopy (RF),
#: angiography (XA), ultrasound and secondary capture
PROJECTION = ("CR", "DX", "MG", "RF", "XA", "US", "SC")
SHOWN = 5
RULE = ("2D images are single-frame files of projection modalities (" + ", ".join(PROJECTION) + "); a volume is "
        "a folder of at least two files sharing one SeriesInstanceUID whose ImagePositionPatient lie along one slice "
        "normal")


def multi_frame_error(name: str, count: int) -> DataError:
    return DataError(f"{name}: a multi-frame DICOM file ({count} frames, e.g. an ultrasound cine or a tomosynthesis "
                     "stack); medtl classifies single 2D images and reads volumes from folders of single-frame slices, "
                     "and never takes a first frame silently. Export the frame you mean as a file of its own.")


class DicomReader(SuffixReader):
    name = "dicom"
    kind = "image"
    suffixes = SUFFIXES

    def accepts(self, path: Path) -> bool:
        return is_dicom(path) if path.exists() else super().accepts(path)

    def items(self, files: Sequence[Path], reading: Reading) -> list[Item]:
        """Images and volumes among ``files`` by the 2D/3D rule (module docstring); the outcome is logged."""
        series = DicomSeriesReader()
        headers = {f: read_dataset(f, pixels=False) for f in files}
        by_folder: dict[Path, list[Path]] = defaultdict(list)
        for f in files:
            by_folder[f.parent].append(f)
        items: list[Item] = []
        refused: list[Path] = []
        volumes = 0
        for folder, in_folder in by_folder.items():
            found = [headers[f] for f in in_folder]
            if reading.dicom == "3d" or reading.dicom == "auto" and is_volume(found):
                items.append(Item(folder, series))
                volumes += 1
                continue
            for f, ds in zip(in_folder, found):
                if frames(ds) > 1:
                    raise multi_frame_error(printable(f), frames(ds))
                if reading.dicom == "2d" or str(ds.get("Modality", "")).upper() in PROJECTION:
                    items.append(Item(f, self))
                else:
                    refused.append(f)
        if refused:
            shown = ", ".join(f"{printable(f)} ({printable(str(headers[f].get('Modality', '')) or 'no Modality')})"
                              for f in refused[:SHOWN]) + (", ..." if len(refused) > SHOWN else "")
            raise DataError(
                f"{len(refused)} DICOM file(s) are neither 2D images nor slices of a volume by medtl's rule: {shown}. "
                f"{RULE}. Put each series in a folder of its own, or force the reading: --dicom 2d (every "
                "single-frame file an image) or --dicom 3d (every folder of DICOM files one series; --volume implies "
                "it).")
        warn_identified(headers)
        images = len(items) - volumes
        how = {"auto": f"by the rule ({RULE})", "2d": "as forced by --dicom 2d", "3d": "as forced by --dicom 3d"}
        log.info("DICOM: %d file(s) read as 2D images, %d folder(s) as volumes, %s.", images, volumes,
                 how[reading.dicom])
        return items

    def read(self, source: Source, reading: Reading = Reading()) -> Decoded:
        name = source_name(source)
        if isinstance(source, Path) and not source.is_file():
            raise DataError(f"cannot read image {name}: no such file; fix the path or remove the entry.")
        ds = read_dataset(source)
        if "PixelData" not in ds:
            raise DataError(f"{name}: a DICOM file without pixel data (a report or structured document?); remove it.")
        if frames(ds) > 1:
            raise multi_frame_error(name, frames(ds))
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        check_pixels(name, columns, rows, int(ds.get("SamplesPerPixel", 1) or 1))
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        pydicom = pydicom_module()
        try:
            stored = ds.pixel_array
            if photometric in ("MONOCHROME1", "MONOCHROME2"):
                array = _grey(pydicom, stored, ds, photometric, reading.window)
            elif photometric == "PALETTE COLOR":
                rgb = pydicom.pixels.apply_color_lut(stored, ds)
                array = (rgb / float(2 ** int(ds.RedPaletteColorLookupTableDescriptor[2]) - 1)).astype(np.float32)
            else:  # RGB, or YBR_* already converted to RGB by the decoder
                array = _colour(stored, ds)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 -- a missing decoder, broken pixel data, an unsupported LUT
            raise DataError(f"cannot read image {name}: {type(e).__name__}: {printable(str(e)).rstrip('.')}. A "
                            "compressed file needs pip install \"medtl[dicom]\"; otherwise the file is corrupt or of "
                            "an unsupported kind; replace or remove it.") from e
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.shape[2] not in (1, 3):
            raise DataError(f"cannot read image {name}: decoded to an array of shape {array.shape}, not one 2D "
                            "image; export it as a single-frame grey or RGB image.")
        modality = str(ds.get("Modality", "")).upper() or "OT"
        return Decoded(array, f"{columns}x{rows} DICOM-{printable(modality)}")

    def attribute(self, path: Path, keyword: str) -> str:
        """The value of the DICOM attribute ``keyword`` in ``path`` (for --group-by); never printed."""
        return attribute_value(path, keyword)


def is_volume(headers: Sequence) -> bool:
    """The 2D/3D rule's volume test: at least two single-frame files, one SeriesInstanceUID, parallel slices at
    distinct positions along the slice normal."""
    if len(headers) < 2 or any(frames(ds) > 1 for ds in headers):
        return False
    uids = {str(ds.get("SeriesInstanceUID", "")) for ds in headers}
    if len(uids) != 1 or "" in uids:
        return False
    positions = slice_positions(headers)
    return positions is not None and bool((np.diff(np.sort(positions)) > 1e-3).all())


def warn_identified(headers: dict[Path, object]) -> None:
    """Warn when files are not de-identified (a non-empty PatientName, or no PatientIdentityRemoved), counting them
    and naming none of the values."""
    named = [f for f, ds in headers.items() if str(ds.get("PatientName", "") or "").strip()]
    unmarked = [f for f, ds in headers.items() if "PatientIdentityRemoved" not in ds]
    if named or unmarked:
        first = (named or unmarked)[0]
        warnings.warn(
            f"{len(set(named) | set(unmarked))} of {len(headers)} DICOM file(s) may not be de-identified ({len(named)} "
            f"with a non-empty PatientName, {len(unmarked)} without PatientIdentityRemoved), e.g. {printable(first)}; "
            "medtl writes no DICOM attribute values into its outputs, but file paths are copied as image ids. "
            "De-identify the files (e.g. with pydicom's or your PACS's anonymiser) before sharing anything.",
            MedtlWarning, stacklevel=4)


def _grey(pydicom, stored: np.ndarray, ds, photometric: str, window) -> np.ndarray:
    """Modality LUT, VOI, scaling to [0, 1] and MONOCHROME1 inversion (module docstring, steps 2-4)."""
    values = pydicom.pixels.apply_modality_lut(stored, ds)
    has_voi = bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)
    if isinstance(window, tuple):
        view = pydicom.Dataset()  # the file's modality attributes with the given window (LINEAR), nothing else
        for keyword in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope",
                        "RescaleIntercept", "ModalityLUTSequence"):
            if keyword in ds:
                setattr(view, keyword, ds[keyword].value)
        view.WindowCenter, view.WindowWidth = window
        out, (lo, hi) = pydicom.pixels.apply_windowing(values, view), modality_range(ds)
    elif window is None and has_voi:
        out = pydicom.pixels.apply_voi_lut(values, ds)
        if ds.get("VOILUTSequence"):  # apply_voi_lut prefers the LUT: its output is 0 .. 2**bits - 1
            lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        else:
            lo, hi = modality_range(ds)
    else:
        out, (lo, hi) = values, modality_range(ds)
    out = np.asarray(out, dtype=np.float64)
    unit = (hi - out) / (hi - lo) if photometric == "MONOCHROME1" else (out - lo) / (hi - lo)
    return np.clip(unit, 0, 1).astype(np.float32)


def modality_range(ds) -> tuple[float, float]:
    """The output range of the modality LUT over every value the stored bits can hold (as pydicom's
    ``apply_windowing`` computes it)."""
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    lo, hi = (0, 2 ** bits - 1) if int(ds.get("PixelRepresentation", 0)) == 0 else (-(2 ** (bits - 1)),
                                                                                    2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return float(lo), float(hi)


def _colour(stored: np.ndarray, ds) -> np.ndarray:
    """RGB samples: 8-bit data stays uint8, more bits become float32 in [0, 1] by the stored bits."""
    bits = int(ds.get("BitsStored", 8) or 8)
    if stored.dtype == np.uint8 and bits == 8:
        return stored
    return np.clip(stored.astype(np.float32) / float(2 ** bits - 1), 0, 1)
