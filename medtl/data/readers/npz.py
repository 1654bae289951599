"""A whole data set in one ``.npz`` file in MedMNIST layout (``train_images`` ... ``test_labels``)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ...errors import DataError
from .base import Decoded, Reading, Source, SuffixReader, source_name

KEYS = tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))


class NpzReader(SuffixReader):
    name = "npz"
    kind = "dataset"
    suffixes = (".npz",)

    def read(self, source: Source, reading: Reading = Reading()) -> Decoded:
        """Not one image: see :func:`read_npz`, which the .npz data set loader calls."""
        raise DataError(f"{source_name(source)}: a .npz file is a whole data set (MedMNIST layout), not one image; "
                        "give it as the data set (--data FILE.npz).")


def read_npz(file: io.BytesIO | Path, where: str) -> dict[str, np.ndarray]:
    """The six MedMNIST-layout arrays (``train_images`` ... ``test_labels``) of an ``.npz`` file."""
    try:
        npz = np.load(file, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataError(f"{where}: holds a single array, not a .npz archive with the keys {', '.join(KEYS)}.")
        with npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise DataError(f"{where}: lacks the arrays {', '.join(missing)} (found {', '.join(npz.files)}); "
                                f"a MedMNIST-layout .npz needs {', '.join(KEYS)}.")
            return {k: npz[k] for k in KEYS}
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- zipfile, numpy and pickle refusals all mean a bad file
        raise DataError(f"{where}: cannot read as a .npz archive ({type(e).__name__}: {e}); replace the file.") from e
