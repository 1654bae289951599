"""Reading image files into arrays with one channel layout and value range, and stacking many into a tensor.

Channel rules: grey stays 1 channel, colour is RGB; alpha is removed by compositing on black; palette and other
PIL modes become RGB. Value rules: 8-bit data stays uint8; 16-bit data, grey or colour, becomes float32 in [0, 1]
(divided by 65535) so that no precision is lost to a uint8 round trip. PIL reduces 16-bit colour to 8 bits, so
16-bit RGB(A) PNG files are decoded with pypng and TIFF files with tifffile.

Refused, with a DataError naming the file: multi-frame files (a TIFF stack or an animated GIF is not one 2D image,
and taking its first frame would silently drop the rest), and images above ``MAX_PIXELS`` (checked from the header,
before decoding, so that a small file cannot make medtl allocate gigabytes).
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch only where images are stacked into a tensor: decoding one stays numpy (medtl serve)
    import torch

from ..errors import DataError, MedtlWarning
from .text import printable

MAX_PIXELS = 50_000_000  # per image; a 7,000 x 7,000 scan fits, a decompression bomb does not
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
INT32_MAX = np.iinfo(np.int32).max


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names a supported image by its extension (case-insensitive); hidden files are not."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``(H, W, C)``, C in {1, 3}: uint8, or float32 in [0, 1] for 16-bit data.

    Raises DataError naming the file when it cannot be decoded (PIL raises many exception types for corrupt
    files: OSError, ValueError, SyntaxError, struct.error, ...; all are reported the same way), is a broken or
    looping symbolic link, has several frames, or has more than ``MAX_PIXELS`` pixels.
    """
    return read_image_format(path)[0]


def read_image_format(path: str | Path) -> tuple[np.ndarray, str]:
    """:func:`read_image` and the file's size and mode before any conversion, e.g. ``"1024x768 L"``."""
    path = Path(path)
    name = printable(path)
    if path.is_symlink() and not path.exists():
        raise DataError(f"cannot read image {name}: a broken or looping symbolic link (to "
                        f"{printable(os.readlink(path))}); fix the link or remove it.")
    if not path.is_file():
        raise DataError(f"cannot read image {name}: no such file; fix the path or remove the entry.")
    return decode_image(path, name, path.suffix.lower())


class Upload(io.BytesIO):
    """An in-memory file (``medtl serve``: uploads are never written to disk) that decoders' messages name by its
    file name instead of an object address."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.label = name

    def __repr__(self) -> str:
        return repr(self.label)


def decode_image(source: Path | BinaryIO, name: str, suffix: str = "") -> tuple[np.ndarray, str]:
    """:func:`read_image_format` of a file or an in-memory stream (``name`` and ``suffix`` for messages)."""
    supported = ", ".join(sorted(IMAGE_EXTENSIONS))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS below says it clearly
            im = Image.open(source)
        with im:
            _check_header(im, name)
            fmt = f"{im.width}x{im.height} {im.mode}"
            if _sixteen_bit_colour(im):
                return _read_sixteen_bit_colour(source, im.format, name), f"{fmt};16"
            im.load()
            return image_array(im, name), fmt
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 -- any decoder failure means the same to the user: a bad file
        if suffix not in IMAGE_EXTENSIONS:
            raise DataError(
                f"cannot read image {name}: unsupported format {suffix or '(no extension)'!r}; medtl reads "
                f"{supported}. Convert it (16-bit PNG keeps the precision of DICOM and other medical formats)."
            ) from e
        raise DataError(
            f"cannot read image {name}: {type(e).__name__}: {printable(str(e)).rstrip('.')}. The file is corrupt or "
            f"not a supported image ({supported}); replace or remove it."
        ) from e


def _check_header(im: Image.Image, name: str) -> None:
    """Refuse multi-frame files and oversized images from the header alone (``Image.open`` decodes nothing)."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":  # a camera's MPO JPEG is one picture plus previews: frame 0 is the picture
        raise DataError(
            f"cannot read image {name}: it has {frames} frames (a multi-frame {im.format} file: a stack, a series or "
            "an animation), and medtl classifies single 2D images; save the frame you mean as a file of its own."
        )
    if im.width * im.height > MAX_PIXELS:
        raise DataError(
            f"cannot read image {name}: {im.width} x {im.height} pixels is above medtl's limit of "
            f"{MAX_PIXELS:,} per image (decoding it would take {im.width * im.height * len(im.getbands()):,} bytes "
            "or more before resizing); downscale it (every image is resized to --image-size anyway) or remove it."
        )


def _sixteen_bit_colour(im: Image.Image) -> bool:
    """Whether PIL would reduce this file's 16-bit samples to 8 bits (its RGB, RGBA and LA modes hold 8 bits)."""
    rawmode = im.tile[0].args if im.tile else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    return im.mode in ("RGB", "RGBA", "LA") and isinstance(rawmode, str) and ";16" in rawmode


def _read_sixteen_bit_colour(path: Path | BinaryIO, fmt: str | None, name: str) -> np.ndarray:
    """A 16-bit RGB(A) or grey+alpha PNG or TIFF as float32 ``(H, W, 3 | 1)`` in [0, 1], alpha composited on
    black."""
    stream = not isinstance(path, (str, os.PathLike))
    if stream:
        path.seek(0)
    if fmt == "PNG":
        import png

        reader = png.Reader(file=path) if stream else png.Reader(filename=os.fspath(path))
        width, height, rows, info = reader.asDirect()
        a = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, info["planes"])
    elif fmt == "TIFF":
        import tifffile

        a = tifffile.imread(path)
    else:
        raise DataError(f"cannot read image {name}: 16-bit colour {fmt} files are not supported; save it as a 16-bit "
                        "PNG or TIFF.")
    a = a.astype(np.float32) / 65535
    if a.ndim != 3 or a.shape[2] not in (2, 3, 4):
        raise DataError(f"cannot read image {name}: expected 16-bit RGB(A) or grey+alpha samples, found an array of "
                        f"shape {a.shape}; save it as a 16-bit RGB PNG.")
    return a[..., :-1] * a[..., -1:] if a.shape[2] in (2, 4) else a


def image_array(im: Image.Image, where: str = "image") -> np.ndarray:
    """A decoded PIL image as ``(H, W, C)`` following the module's channel and value rules."""
    mode = im.mode
    if mode in ("L", "RGB"):
        a = np.asarray(im)
    elif mode == "1":
        a = np.asarray(im.convert("L"))
    elif mode in ("LA", "RGBA"):
        a = _on_black(np.asarray(im))
    elif mode == "PA" or (mode == "P" and "transparency" in im.info):
        a = _on_black(np.asarray(im.convert("RGBA")))
    elif mode in SIXTEEN_BIT_MODES:
        a = np.asarray(im).astype(np.float32) / 65535
    elif mode == "I":
        a = _int32_unit(np.asarray(im), where)
    elif mode == "F":
        a = _float_unit(np.asarray(im), where)
    else:  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...
        a = np.asarray(im.convert("RGB"))
    return a[..., None] if a.ndim == 2 else a


def _on_black(a: np.ndarray) -> np.ndarray:
    """Composite an 8-bit image with a trailing alpha channel on black, dropping the alpha channel."""
    alpha = a[..., -1:].astype(np.uint16)
    return ((a[..., :-1].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _int32_unit(a: np.ndarray, where: str) -> np.ndarray:
    """Mode "I" to [0, 1]: PIL opens 16-bit PNG/TIFF data in this mode too, so values within 0..65535 are scaled
    by 65535 and larger ones by the int32 maximum; negative values are refused rather than clipped."""
    lo, hi = int(a.min()), int(a.max())
    if lo < 0:
        raise DataError(f"{where}: 32-bit integer image has negative values (min {lo}); save it as 8- or 16-bit.")
    return (a / (65535 if hi <= 65535 else INT32_MAX)).astype(np.float32)


def _float_unit(a: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise DataError(
            f"{where}: floating-point image has values outside [0, 1] (min {a.min()}, max {a.max()}); "
            "rescale it to [0, 1] or save it as 8- or 16-bit."
        )
    return a.astype(np.float32)


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


def load_images(paths: Sequence[Path], size: int, skip_bad: bool = False
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
        results = list(pool.map(lambda p: _read_resized(p, size), paths))
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


def _read_resized(path: Path, size: int) -> tuple[np.ndarray, str] | DataError:
    """One image read and resized with its format, or the DataError saying why it cannot be (collected, not
    raised, by the pool)."""
    try:
        a, fmt = read_image_format(path)
        return resize_array(a, size), fmt
    except DataError as e:
        return e
