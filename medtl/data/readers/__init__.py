"""One reader per file format, behind one small protocol (:class:`~.base.Reader`: a suffix check and a read), and
the registry :data:`READERS`. The folder and CSV loaders, ``medtl predict`` and a server ask this module, never a
format: to add a format, write one module with a reader class and add one line to :data:`READERS`.

:func:`read_image` (a path or an upload's bytes to an ``(H, W, C)`` array) imports no torch.
"""
from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from ..text import printable
from .base import (DICOM_MODES, MAX_PIXELS, MAX_VOXELS, NO_WINDOW, WINDOWS, Decoded, Item, Reader, Reading,
                   parse_window)
from .dicom import DicomReader
from .dicom_series import DicomSeriesReader
from .nifti import NiftiReader
from .npz import NpzReader
from .pil import PilReader

#: every format medtl reads; a file goes to the one reader that accepts it
READERS: tuple[Reader, ...] = (
    PilReader(),  # PNG, JPEG, TIFF (16-bit too), BMP, GIF, WebP
    DicomReader(),  # single-image DICOM files, and the 2D/3D rule
    DicomSeriesReader(),  # a folder holding one DICOM series
    NiftiReader(),  # .nii, .nii.gz volumes
    NpzReader(),  # a whole data set in MedMNIST layout
)

__all__ = ["DICOM_MODES", "MAX_PIXELS", "MAX_VOXELS", "NO_WINDOW", "READERS", "WINDOWS", "Decoded", "Item",
           "Reader", "Reading", "attribute_groups", "collect", "file_suffixes", "parse_window", "read_image",
           "reader_for"]


def file_suffixes(kinds: Sequence[str] = ("image", "volume")) -> list[str]:
    """The suffixes of the readers of ``kinds``, sorted (for messages)."""
    return sorted({s for r in READERS if r.kind in kinds for s in r.suffixes})


def reader_for(path: Path) -> Reader | None:
    """The reader of ``path``, or None when no reader accepts it; two would be a registry bug."""
    found = [r for r in READERS if r.accepts(path)]
    if len(found) > 1:
        raise RuntimeError(f"{path}: accepted by several readers {found}; each suffix must belong to one reader.")
    return found[0] if found else None


def unsupported(name: str, suffix: str) -> DataError:
    return DataError(f"cannot read image {name}: unsupported format {suffix or '(no extension)'!r}; medtl reads "
                     f"{', '.join(file_suffixes(('image',)))} images and {', '.join(file_suffixes(('volume',)))} "
                     "volumes (and folders of one DICOM series). Convert it (16-bit PNG keeps the precision of most "
                     "medical formats).")


def read_image(source: str | Path | bytes, name: str | None = None, reading: Reading = Reading()) -> Decoded:
    """A 2D image file, or the bytes of one (``name``: its file name, for the format and messages), decoded by its
    reader: ``Decoded.array`` is ``(H, W, C)``, C in {1, 3}, uint8 or float32 in [0, 1]."""
    if isinstance(source, (bytes, bytearray)):
        stream = io.BytesIO(source)
        stream.name = name or "uploaded image"  # type: ignore[attr-defined]
        sniffed = DicomReader() if source[128:132] == b"DICM" else None
        reader = sniffed or reader_for(Path(stream.name)) or PilReader()  # PIL knows its formats by content
        if reader.kind != "image":
            raise unsupported(printable(stream.name), Path(stream.name).suffix.lower())
        return reader.read(stream, reading)
    path = Path(source)
    reader = reader_for(path)
    if reader is None:
        if path.is_symlink() and not path.exists() or not path.exists():
            return PilReader().read(path, reading)  # says "broken link" or "no such file"
        raise unsupported(printable(path), path.suffix.lower())
    if reader.kind != "image":
        raise DataError(f"cannot read image {printable(path)}: a {reader.name} file is not a 2D image.")
    return reader.read(path, reading)


def collect(files: Sequence[Path], reading: Reading = Reading(), keep_unknown: bool = False
            ) -> tuple[list[Item], Counter[str]]:
    """The data set items among ``files`` (in the files' order; a DICOM series folder where its first file was)
    and the suffixes of the files no image or volume reader takes, counted. A broken symbolic link (and with
    ``keep_unknown`` a file of no known format) is kept as a 2D item, reported as unreadable when it is read."""
    claimed: dict[Reader, list[Path]] = defaultdict(list)
    ignored: Counter[str] = Counter()
    first: dict[Path, int] = {}  # file or folder -> position of its first file
    for k, f in enumerate(files):
        broken = f.is_symlink() and not f.exists()
        reader = reader_for(f) or (READERS[0] if broken or keep_unknown else None)
        if reader is None or reader.kind not in ("image", "volume"):
            ignored[f.suffix.lower() or "(no extension)"] += 1
            continue
        claimed[reader].append(f)
        first.setdefault(f, k)
        first.setdefault(f.parent, k)
    items = [item for reader, found in claimed.items() for item in reader.items(found, reading)]
    return sorted(items, key=lambda item: first.get(item.path, len(files))), ignored


def attribute_groups(items: Sequence[Item], keyword: str) -> list[str]:
    """The group id of each item from the file attribute ``keyword`` (a DICOM PatientID, StudyInstanceUID, ...),
    as a salted hash: the values never leave memory. The salt is derived from the whole set of values, so the same
    files always give the same ids (splits are reproducible) while an id cannot be checked against a guessed value
    without knowing every other value too."""
    values = []
    for item in items:
        attribute = getattr(item.reader, "attribute", None)
        if attribute is None:
            raise DataError(f"{printable(item.path)}: --group-by {keyword} reads a file attribute, which "
                            f"{item.reader.name} files do not have; group by a CSV column instead.")
        values.append(attribute(item.path, keyword))
    salt = hashlib.blake2b("\n".join(sorted(set(values))).encode(), digest_size=32).digest()
    return [f"{keyword}:{hashlib.blake2b(v.encode(), key=salt, digest_size=8).hexdigest()}" for v in values]
