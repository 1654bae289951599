"""PNG, JPEG, TIFF, BMP, GIF and WebP through PIL, 16-bit colour through pypng and tifffile.

Channel rules: grey stays 1 channel, colour is RGB; alpha is removed by compositing on black; palette and other
PIL modes become RGB. Value rules: 8-bit data stays uint8; 16-bit data, grey or colour, becomes float32 in [0, 1]
(divided by 65535) so that no precision is lost to a uint8 round trip. PIL reduces 16-bit colour to 8 bits, so
16-bit RGB(A) PNG files are decoded with pypng and TIFF files with tifffile.

Refused, with a DataError naming the file: multi-frame files (a TIFF stack or an animated GIF is not one 2D image,
and taking its first frame would silently drop the rest), and images above ``MAX_PIXELS`` (checked from the header,
before decoding, so that a small file cannot make medtl allocate gigabytes).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError
from ..text import printable
from .base import Decoded, Reading, Source, SuffixReader, check_pixels, source_name

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
INT32_MAX = np.iinfo(np.int32).max


class PilReader(SuffixReader):
    name = "pil"
    kind = "image"
    suffixes = SUFFIXES

    def read(self, source: Source, reading: Reading = Reading()) -> Decoded:
        """The image as ``(H, W, C)``, C in {1, 3}: uint8, or float32 in [0, 1] for 16-bit data, and its size and
        mode before any conversion (``"1024x768 L"``). PIL raises many exception types for corrupt files (OSError,
        ValueError, SyntaxError, struct.error, ...); all are reported as one DataError naming the file."""
        name = source_name(source)
        if isinstance(source, Path):
            if source.is_symlink() and not source.exists():
                raise DataError(f"cannot read image {name}: a broken or looping symbolic link (to "
                                f"{printable(os.readlink(source))}); fix the link or remove it.")
            if not source.is_file():
                raise DataError(f"cannot read image {name}: no such file; fix the path or remove the entry.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_pixels says it clearly
                im = Image.open(source)
            with im:
                _check_header(im, name)
                fmt = f"{im.width}x{im.height} {im.mode}"
                if _sixteen_bit_colour(im):
                    if not isinstance(source, Path):
                        source.seek(0)
                    return Decoded(_read_sixteen_bit_colour(source, im.format, name), f"{fmt};16")
                im.load()
                return Decoded(image_array(im, name), fmt)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 -- any decoder failure means the same to the user: a bad file
            raise DataError(
                f"cannot read image {name}: {type(e).__name__}: {printable(str(e)).rstrip('.')}. The file is corrupt "
                f"or not a supported image ({', '.join(SUFFIXES)}); replace or remove it."
            ) from e


def _check_header(im: Image.Image, name: str) -> None:
    """Refuse multi-frame files and oversized images from the header alone (``Image.open`` decodes nothing)."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":  # a camera's MPO JPEG is one picture plus previews: frame 0 is the picture
        raise DataError(
            f"cannot read image {name}: it has {frames} frames (a multi-frame {im.format} file: a stack, a series or "
            "an animation), and medtl classifies single 2D images; save the frame you mean as a file of its own."
        )
    check_pixels(name, im.width, im.height, len(im.getbands()))


def _sixteen_bit_colour(im: Image.Image) -> bool:
    """Whether PIL would reduce this file's 16-bit samples to 8 bits (its RGB, RGBA and LA modes hold 8 bits)."""
    rawmode = im.tile[0].args if im.tile else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    return im.mode in ("RGB", "RGBA", "LA") and isinstance(rawmode, str) and ";16" in rawmode


def _read_sixteen_bit_colour(source: Source, fmt: str | None, name: str) -> np.ndarray:
    """A 16-bit RGB(A) or grey+alpha PNG or TIFF as float32 ``(H, W, 3 | 1)`` in [0, 1], alpha composited on
    black."""
    if fmt == "PNG":
        import png

        reader = png.Reader(filename=os.fspath(source)) if isinstance(source, Path) else png.Reader(file=source)
        width, height, rows, info = reader.asDirect()
        a = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, info["planes"])
    elif fmt == "TIFF":
        import tifffile

        a = tifffile.imread(source)
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
