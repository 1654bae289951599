"""NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel: reoriented to the closest canonical (RAS) axes and read as
``(z, y, x)`` float32 in the file's units; a 4D file (a time series) is refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..text import printable
from ...optional import require
from .base import Decoded, Reading, SuffixReader, check_voxels


class NiftiReader(SuffixReader):
    name = "nifti"
    kind = "volume"
    suffixes = (".nii", ".nii.gz")

    def read(self, source: Path, reading: Reading = Reading()) -> Decoded:
        nib = require("nibabel", extra="3d", purpose="reading NIfTI files")
        try:
            image = nib.load(source)
            if len(image.shape) != 3:
                raise DataError(f"{printable(source)}: a NIfTI volume of {len(image.shape)} dimensions {image.shape}; "
                                "medtl classifies 3D volumes, so give one 3D volume per file (split a time series or "
                                "multi-channel file into its volumes).")
            check_voxels(source, image.shape)
            image = nib.as_closest_canonical(image)
            data = np.asarray(image.dataobj, dtype=np.float32)
            zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 -- nibabel raises many types for a bad file
            raise DataError(f"{printable(source)}: cannot read as NIfTI ({type(e).__name__}: {e}); replace the "
                            "file.") from e
        volume = np.ascontiguousarray(data.transpose(2, 1, 0))  # (x, y, z) -> (z, y, x)
        d, h, w = volume.shape
        return Decoded(volume, f"{w}x{h}x{d} NIfTI", (zooms[2], zooms[1], zooms[0]))
