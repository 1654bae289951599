"""Fuzzing the image reader: random bytes, truncated headers and valid files cut at random offsets either decode to
exactly what the complete file holds or raise a DataError naming the file; no other exception, no crash, no hang."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.data import read_image
from medtl.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about corrupt EXIF on the way
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".gif": "GIF", ".webp": "WEBP"}
HEADERS = {
    ".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", ".bmp": b"BM", ".tif": b"II*\x00",
    ".gif": b"GIF89a", ".webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
}


def encoded(ext: str, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(buffer, FORMATS[ext])
    return buffer.getvalue()


def only_clear_errors(path: Path, data: bytes, complete: np.ndarray | None = None) -> None:
    """Reading ``data`` from ``path`` gives the complete file's pixels or a DataError that names the file."""
    path.write_bytes(data)
    try:
        image = read_image(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    assert complete is not None, f"{path.name}: {len(data)} fuzzed bytes decoded as an image"
    np.testing.assert_array_equal(image, complete)


def test_random_bytes_and_bare_headers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(150):
        ext = list(FORMATS)[i % len(FORMATS)]
        noise = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        only_clear_errors(tmp_path / f"noise{ext}", noise)
        only_clear_errors(tmp_path / f"header{ext}", HEADERS[ext] + noise)
        only_clear_errors(tmp_path / f"prefix{ext}", HEADERS[ext][: int(rng.integers(0, len(HEADERS[ext]) + 1))])


@pytest.mark.parametrize("ext", list(FORMATS))
def test_valid_files_cut_at_random_offsets(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(1)
    data = encoded(ext, rng)
    whole = tmp_path / f"whole{ext}"
    whole.write_bytes(data)
    complete = read_image(whole)
    cuts = {0, 1, 8, len(data) - 1, *rng.integers(0, len(data), 40).tolist()}
    for cut in sorted(cuts):
        only_clear_errors(tmp_path / f"cut{ext}", data[:cut], complete)


def test_flipped_bytes_in_valid_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for ext in FORMATS:
        data = bytearray(encoded(ext, rng))
        for _ in range(25):
            mutated = bytearray(data)
            for pos in rng.integers(0, len(data), 3):
                mutated[pos] = int(rng.integers(0, 256))
            path = tmp_path / f"flipped{ext}"
            path.write_bytes(bytes(mutated))
            try:  # a flipped pixel byte may still decode: then it must be a well-formed array
                image = read_image(path)
            except DataError as e:
                assert str(path) in str(e)
            else:
                assert image.ndim == 3 and image.shape[2] in (1, 3) and image.dtype == np.uint8


def test_a_header_claiming_a_huge_image_is_refused_without_allocating_it(tmp_path: Path) -> None:
    data = bytearray(encoded(".png", np.random.default_rng(3)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    only_clear_errors(tmp_path / "bomb.png", bytes(data))
