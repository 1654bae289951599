"""Tiny DICOM files written with pydicom for the tests: single-image radiographs (MONOCHROME1/2 twins, rescale,
windows, VOI LUTs, 12-bit data in 16-bit words), compressed copies, multi-frame ultrasound and CT series, with
planted protected health information (PHI) that must never reach medtl's outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

# planted in every file that has_phi: none of these may appear in a file medtl writes
PHI = {"PatientName": "Doe^Jane^Phiname", "InstitutionName": "Phi General Hospital", "PatientBirthDate": "19230417",
       "AccessionNumber": "PHIACC8812", "ReferringPhysicianName": "Phidoc^Walter"}
SOP_CLASS = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1",
             "MG": "1.2.840.10008.5.1.4.1.1.1.2", "US": "1.2.840.10008.5.1.4.1.1.3.1",
             "CT": "1.2.840.10008.5.1.4.1.1.2", "SC": "1.2.840.10008.5.1.4.1.1.7"}


def picture(seed: int = 0, size: int = 32, bits: int = 12, bright: bool = False) -> np.ndarray:
    """A 12-bit test picture: a ramp plus noise, with a bright square when ``bright`` (the class signal)."""
    rng = np.random.default_rng(seed)
    top = 2 ** bits - 1
    ramp = np.linspace(0, 0.6 * top, size)[None, :] + np.zeros((size, 1))
    image = ramp + rng.integers(0, top // 8, (size, size))
    if bright:
        image[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0.95 * top
    return np.clip(image, 0, top).astype(np.uint16)


def write_dicom(path: Path, stored: np.ndarray, *, modality: str = "DX", photometric: str = "MONOCHROME2",
                bits_stored: int = 12, slope: float | None = None, intercept: float | None = None,
                window: tuple[float, float] | None = None, voi_lut: np.ndarray | None = None, patient_id: str = "P0",
                has_phi: bool = True, series_uid: str | None = None, position: tuple | None = None,
                study_uid: str | None = None, compress: str | None = None) -> Path:
    """One DICOM file holding ``stored`` (``(H, W)``, ``(F, H, W)`` multi-frame, or ``(H, W, 3)`` RGB uint8)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = modality, patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid or generate_uid(), series_uid or generate_uid()
    if has_phi:
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
    else:
        ds.PatientName, ds.PatientIdentityRemoved = "", "YES"
    rgb = stored.ndim == 3 and stored.shape[-1] == 3
    frames = stored.shape[0] if stored.ndim == 3 and not rgb else 1
    ds.Rows, ds.Columns = stored.shape[-3:-1] if rgb else stored.shape[-2:]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else photometric
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if rgb else 16
    ds.BitsStored = 8 if rgb else bits_stored
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept or 0, "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = pydicom.Dataset()
        item.add_new("LUTDescriptor", "US", [len(voi_lut), 0, 16])
        item.add_new("LUTData", "US", [int(v) for v in voi_lut])
        ds.VOILUTSequence = Sequence([item])
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.0
    ds.PixelData = np.ascontiguousarray(stored.astype(np.uint8 if rgb else np.uint16)).tobytes()
    if compress is not None:
        ds.compress(compress)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_ct_series(folder: Path, slices: int = 4, size: int = 32, patient_id: str = "P-CT", **kw) -> Path:
    """A CT series (one SeriesInstanceUID, slices along z) in ``folder``."""
    uid = generate_uid()
    for k in range(slices):
        write_dicom(folder / f"slice{k:02d}.dcm", picture(100 + k, size), modality="CT", slope=1.0, intercept=-1024.0,
                    series_uid=uid, position=(0.0, 0.0, 2.0 * k), patient_id=patient_id, **kw)
    return folder


def xray_folder(root: Path, per_class: int = 12, patients: int = 6, size: int = 32, has_phi: bool = True) -> Path:
    """``root/<normal|abnormal>/*.dcm``: DX and CR X-rays (half MONOCHROME1), ``patients`` patients per class."""
    for c, label in enumerate(("normal", "abnormal")):
        for i in range(per_class):
            stored = picture(1000 * c + i, size, bright=bool(c))
            mono1 = i % 2 == 1
            write_dicom(root / label / f"img{i:02d}.dcm", 4095 - stored if mono1 else stored,
                        modality=("DX", "CR")[i % 3 == 0], photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
                        patient_id=f"PHIPID-{c}-{i % patients}", has_phi=has_phi)
    return root
