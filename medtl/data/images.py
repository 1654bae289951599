"""Reading 2D image files into arrays with one channel layout and value range, and stacking many into a tensor.

Each file is decoded by its format's reader (:mod:`medtl.data.readers`: channel and value rules there); this module
resizes and stacks. 8-bit data stays uint8; 16-bit data and DICOM become float32 in [0, 1].
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch only where images are stacked into a tensor: decoding one stays numpy (medtl serve)
    import torch

from ..errors import DataError, MedtlWarning
from .readers import MAX_PIXELS, Reading, file_suffixes
from .readers import read_image as read_decoded
from .text import printable

IMAGE_EXTENSIONS = frozenset(file_suffixes(("image",)))  # every 2D format's suffixes (for messages and predict)

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "check_memory", "load_images", "read_image", "read_image_format",
           "resize_array"]


def read_image(path: str | Path, reading: Reading = Reading()) -> np.ndarray:
    """An image file as ``(H, W, C)``, C in {1, 3}: uint8, or float32 in [0, 1] (16-bit data, DICOM).

    Raises DataError naming the file when it cannot be decoded, is a broken or looping symbolic link, has several
    frames, or has more than ``MAX_PIXELS`` pixels.
    """
    return read_decoded(path, reading=reading).array


def read_image_format(path: str | Path, reading: Reading = Reading()) -> tuple[np.ndarray, str]:
    """:func:`read_image` and the file's size and mode before any conversion, e.g. ``"1024x768 L"``."""
    decoded = read_decoded(path, reading=reading)
    return decoded.array, decoded.format


def resize_array(a: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, C)`` resized to ``(size, size, C)``, same dtype, with PIL's antialiased bilinear filter.

    The aspect ratio is not kept: every image of a folder or manifest must stack into one tensor.
    """
    if a.shape[:2] == (size, size):
        return a
    if a.dtype == np.uint8:
        out = np.asarray(Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).resize((size, size), Image.BILINEAR))
        return out[..., None] if out.ndim == 2 else out
    channels = [Image.fromarray(np.ascontiguousarray(a[..., c])).resize((size, size), Image.BILINEAR) for c in
                range(a.shape[2])]
    # Bilinear weights are non-negative, so only float rounding can leave [0, 1].
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0, 1).astype(np.float32)


def load_images(paths: Sequence[Path], size: int, skip_bad: bool = False, reading: Reading = Reading()
                ) -> tuple[torch.Tensor, dict[int, str], list[str]]:
    """Read, resize and stack images into ``(N, C, size, size)``; also return the skipped files and each loaded
    image's size and mode before resizing (``"1024x768 L"``, see :func:`read_image_format`).

    If any image has colour, grey ones are replicated to 3 channels; if any is 16-bit, all become float32 in
    [0, 1] (8-bit ones divided by 255, with a warning), otherwise the result is uint8. Unreadable files raise one
    DataError that names the first and counts the rest, so a user fixes them all in one go; with ``skip_bad`` they
    are left out instead (the tensor holds the readable images in order) and returned as ``{index: reason}``.
    """
    import torch

    if not paths:
        raise DataError("no image files to load")
    check_memory(len(paths), size)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda p: _read_resized(p, size, reading), paths))
    bad = {i: str(r) for i, r in enumerate(results) if isinstance(r, DataError)}
    if bad and not skip_bad:
        first, *rest = bad
        listed = ", ".join(printable(paths[i]) for i in rest[:5]) + (", ..." if len(rest) > 5 else "")
        others = f" {len(rest)} more file(s) cannot be read either: {listed}." if rest else ""
        raise DataError(f"{bad[first]}{others} To leave unreadable files out and list them, pass --skip-bad-images "
                        "(Python: skip_bad_images=True).")
    arrays = [r[0] for r in results if not isinstance(r, DataError)]
    formats = [r[1] for r in results if not isinstance(r, DataError)]
    if not arrays:
        raise DataError(f"none of the {len(paths)} image files can be read, e.g. {bad[0]}")
    channels = max(a.shape[2] for a in arrays)
    as_float = any(a.dtype != np.uint8 for a in arrays)
    if as_float and any(a.dtype == np.uint8 for a in arrays):
        warnings.warn(
            "the images mix 8-bit and 16-bit (or float) files; each is scaled to [0, 1] by its own maximum "
            "(255, 65535), so e.g. a 12-bit scan saved as 16-bit looks darker than an 8-bit one. Convert them to one "
            "bit depth if that matters.", MedtlWarning, stacklevel=2)
    batch = np.empty((len(arrays), channels, size, size), np.float32 if as_float else np.uint8)
    for i, a in enumerate(arrays):
        if as_float and a.dtype == np.uint8:
            a = a.astype(np.float32) / 255
        batch[i] = a.transpose(2, 0, 1)  # a grey (1, H, W) image broadcasts to 3 channels
    return torch.from_numpy(batch), bad, formats


def check_memory(count: int, size: int) -> None:
    """Refuse before allocating when ``count`` images of ``size`` x ``size`` cannot fit in this machine's memory
    (counting one byte per pixel, the least any image takes)."""
    need = count * size * size
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound to compare with
        return
    if need > total:
        raise DataError(f"{count} images of {size} x {size} pixels need at least {need / 2**30:.1f} GiB in memory, "
                        f"more than this machine has ({total / 2**30:.1f} GiB); use a smaller --image-size.")


def _read_resized(path: Path, size: int, reading: Reading) -> tuple[np.ndarray, str] | DataError:
    """One image read and resized with its format, or the DataError saying why it cannot be (collected, not
    raised, by the pool)."""
    try:
        a, fmt = read_image_format(path, reading)
        return resize_array(a, size), fmt
    except DataError as e:
        return e
