"""No silent wrong numbers from the data side (issue #10): duplicate manifest rows, split folders under other names,
16-bit colour, multi-frame files, memory bombs, non-UTF-8 file names, broken symbolic links, image ids, split
records and external evaluation on a subset of classes."""
from __future__ import annotations

import functools
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtl.cli import main
from medtl.data import load_dataset, read_image
from medtl.data.splits import resplit
from medtl.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def noise(seed: int, shape: tuple[int, ...] = (12, 12)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def folder(root: Path, layout: dict[str, int]) -> Path:
    """``root/<relative folder>/<i>.png`` with ``layout[folder]`` distinct 12x12 images each."""
    for k, (sub, n) in enumerate(layout.items()):
        for i in range(n):
            save(root / sub / f"{i}.png", noise(1000 * k + i))
    return root


def png16(path: Path, a: np.ndarray) -> Path:
    """A 16-bit PNG of ``a`` (H, W, 1|2|3|4) uint16, written by hand: PIL cannot write 16-bit colour."""
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) +
                     chunk(b"IEND", b""))
    return path


# --- 2: duplicate manifest rows ------------------------------------------------------------------------------------


def test_repeated_manifest_rows_are_refused_naming_their_lines(tmp_path: Path, capsys) -> None:
    for i in range(5):
        save(tmp_path / "img" / f"{i}.png", noise(i))
    rows = [f"img/{i}.png,{'ab'[i % 2]}" for i in range(5)] * 3  # every row three times
    csv = tmp_path / "m.csv"
    csv.write_text("\n".join(["path,label", *rows]) + "\n")
    with pytest.raises(DataError, match=r"duplicate rows.*'img/0.png' on line 2, line 7, line 12.*Remove the dup"):
        load_dataset(str(csv), image_size=8)
    assert main(["train", "--data", str(csv), "--image-size", "8", "--quiet"]) == 2
    assert "m.csv: duplicate rows" in capsys.readouterr().err


def test_one_path_with_two_labels_is_a_conflicting_label(tmp_path: Path) -> None:
    for i in range(4):
        save(tmp_path / "img" / f"{i}.png", noise(i))
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\nimg/0.png,a\nimg/1.png,a\nimg/2.png,b\nimg/3.png,b\n./img/0.png,b\n")
    with pytest.raises(DataError, match=r"conflicting labels.*'img/0.png' on line 2 \('a'\), line 6 \('b'\)"):
        load_dataset(str(csv), image_size=8)


# --- 4: split folders under other names; what was given and what was drawn ----------------------------------------


def test_training_and_testing_folders_are_splits_not_classes(tmp_path: Path) -> None:
    root = folder(tmp_path / "d", {"Training/cat": 20, "Training/dog": 20, "TESTING/cat": 5, "TESTING/dog": 5})
    ds = load_dataset(str(root), image_size=8)
    assert ds.classes == ["cat", "dog"]
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (40, 10)
    assert ds.source["splits"] == {"train": "given", "val": "drawn from train (12.5%, stratified, seed 0, not grouped "
                                   "by patient)", "test": "given"}
    assert ds.source["split"] == [0.7, 0.1, 0.2]
    assert f"validation: {len(ds.val)} images drawn stratified from train, seed 0; not grouped by patient" in \
        ds.source["split_note"]


def test_split_like_folders_that_cannot_be_splits_stop_the_load(tmp_path: Path) -> None:
    mixed = folder(tmp_path / "mixed", {"Training/a": 2, "Training/b": 2, "extra/x": 2})
    with pytest.raises(DataError, match=r"mixes split folders \(Training\) with other folders \(extra\).*also "
                                        r"recognised in any case: training, valid"):
        load_dataset(str(mixed), image_size=8)
    twice = folder(tmp_path / "twice", {"train/a": 2, "Training/a": 2})
    with pytest.raises(DataError, match="the folders Training, train all name the train split"):
        load_dataset(str(twice), image_size=8)
    no_train = folder(tmp_path / "no_train", {"Valid/a": 2, "Testing/a": 2})
    with pytest.raises(DataError, match="no train/ .*folder"):
        load_dataset(str(no_train), image_size=8)


def test_fractions_are_recorded_only_when_a_split_was_drawn() -> None:
    given = load_dataset("breastmnist", download=False)
    assert given.source["split"] is None and set(given.source["splits"].values()) == {"given"}
    drawn = resplit(given, (0.7, 0.1, 0.2), 3)
    assert drawn.source["split"] == [0.7, 0.1, 0.2]
    assert drawn.source["splits"]["test"] == "drawn from train+val+test pooled (20.0%, stratified, seed 3, not " \
                                             "grouped by patient)"


# --- 5: 16-bit colour and multi-frame files -----------------------------------------------------------------------


def test_sixteen_bit_rgb_is_kept_as_float_not_quantised(tmp_path: Path) -> None:
    a = np.zeros((4, 5, 3), np.uint16)
    a[0, 0] = [256, 257, 300]
    a[1, 2] = [65535, 0, 1000]
    expected = a.astype(np.float32) / 65535
    png = read_image(png16(tmp_path / "rgb16.png", a))
    assert png.dtype == np.float32 and png.shape == (4, 5, 3) and np.array_equal(png, expected)
    rgba = np.concatenate([a, np.full((4, 5, 1), 65535, np.uint16)], axis=2)
    rgba[0, 0, 3] = 0  # transparent: composited on black
    out = read_image(png16(tmp_path / "rgba16.png", rgba))
    assert out.shape == (4, 5, 3) and np.array_equal(out[0, 0], [0, 0, 0]) and np.array_equal(out[1, 2], expected[1, 2])
    grey_alpha = read_image(png16(tmp_path / "la16.png", rgba[..., [0, 3]]))
    assert grey_alpha.shape == (4, 5, 1) and grey_alpha[0, 0, 0] == 0 and grey_alpha[1, 2, 0] == 1
    import tifffile

    tifffile.imwrite(tmp_path / "rgb16.tif", a, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "rgb16.tif"), expected)


def test_multi_frame_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    frames = [Image.fromarray(noise(i)) for i in range(3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    for name in ("stack.tif", "anim.gif"):
        with pytest.raises(DataError, match=rf"{name}: it has 3 frames .*save the frame you mean"):
            read_image(tmp_path / name)


# --- 8: memory bombs from tiny inputs -----------------------------------------------------------------------------


def png_header_only(path: Path, side: int) -> Path:
    """A PNG whose header says ``side`` x ``side`` grey but whose data is a few bytes (decoding would allocate)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) +
                     chunk(b"IEND", b""))
    return path


def test_oversized_images_are_refused_from_the_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"huge.png: 13000 x 13000 pixels is above medtl's limit of 50,000,000 per "
                                        r"image .*downscale it"):
        read_image(png_header_only(tmp_path / "huge.png", 13000))


def test_npz_label_far_beyond_the_image_count_is_refused(tmp_path: Path) -> None:
    images = np.zeros((4, 8, 8), np.uint8)
    labels = np.array([[0], [1], [0], [10**9]])
    np.savez(tmp_path / "d.npz", **{f"{s}_images": images for s in ("train", "val", "test")},
             train_labels=labels, val_labels=labels[:, :] % 2, test_labels=labels % 2)
    with pytest.raises(DataError, match=r"d.npz: train_labels holds the label 1000000000, but labels are class "
                                        r"indices 0..K-1 and the file has only 12 images"):
        load_dataset(str(tmp_path / "d.npz"))


def test_image_size_beyond_the_pixel_limit_is_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="image_size 100000 means 10,000,000,000 pixels"):
        load_dataset("breastmnist", image_size=100_000)


def full_png(path: Path, side: int) -> Path:
    """A real ``side`` x ``side`` grey PNG (all zeros, a few hundred kB), streamed so that writing it is cheap."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@functools.cache
def import_address_space() -> int:
    """Bytes of address space a fresh interpreter holds after importing what ``medtl train`` imports."""
    done = subprocess.run([sys.executable, "-c", "import medtl.cli, medtl.experiment\n"
                           "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmPeak')))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout.strip()) * 1024


@pytest.mark.slow
@pytest.mark.parametrize("case", ["png", "npz_label", "image_size"])
def test_memory_bombs_end_quickly_with_exit_2_under_an_address_space_limit(tmp_path: Path, case: str) -> None:
    """Each case once took gigabytes; with its address space limited to what importing medtl reserves plus 1 GiB
    the command must end with exit status 2 and a message naming the file or option. (A fixed 4 GB limit broke when
    an installed package made the imports reserve more: the address space counts reservations, not use.)"""
    if case == "png":
        data = folder(tmp_path / "d", {"a": 3, "b": 3})
        named = full_png(data / "b" / "huge.png", 13000)
    else:
        images = np.zeros((6, 8, 8), np.uint8)
        labels = np.array([0, 1, 0, 1, 0, 10**9 if case == "npz_label" else 1])
        data = tmp_path / "d.npz"
        np.savez(data, **{f"{s}_{k}": v for s in ("train", "val", "test") for k, v in (("images", images),
                                                                                       ("labels", labels))})
        named = data if case == "npz_label" else "image_size must be >= 1 and <= 2048, got 100000"
    size = "100000" if case == "image_size" else "16"
    limit = import_address_space() + (1 << 30)  # medtl's imports, plus 1 GiB: far below what each bomb took
    done = subprocess.run(
        [sys.executable, "-m", "medtl", "train", "--data", str(data), "--image-size", size, "--epochs", "1",
         "--weights", "none", "--threads", "1", "--out", str(tmp_path / "runs"), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    said = {"png": "above medtl's limit", "npz_label": "labels are class indices", "image_size": "<= 2048"}
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(named) in done.stderr and said[case] in done.stderr and "Traceback" not in done.stderr


# --- 11: file names that are not UTF-8 ----------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that stores names as bytes")
def test_non_utf8_file_names_give_printable_ids_and_messages(tmp_path: Path) -> None:
    root = folder(tmp_path / "d", {"a": 6, "b": 6})
    odd = os.fsdecode(os.fsencode(str(root / "b")) + b"/scan\xff.png")
    save(Path(odd), noise(99))
    bad = os.fsdecode(os.fsencode(str(root / "a")) + b"/broken\xfe.png")
    Path(bad).write_bytes(b"not an image")
    ds = load_dataset(str(root), image_size=8, skip_bad_images=True)
    ids = [i for s in ("train", "val", "test") for i in ds.split(s).ids]
    assert "b/scan\\xff.png" in ids
    assert len(ds.skipped) == 1 and "a/broken\\xfe.png" in ds.skipped[0]
    for text in (*ids, *ds.skipped, json.dumps(ds.source, ensure_ascii=False)):
        text.encode("utf-8")  # no lone surrogates: printable and writable as UTF-8


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that stores names as bytes")
def test_non_utf8_names_train_write_skipped_files_and_evaluate(tmp_path: Path) -> None:
    root = folder(Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/data\xff")), {"a": 8, "b": 8})
    broken = Path(os.fsdecode(os.fsencode(str(root / "a")) + b"/broken\xfe.png"))
    broken.write_bytes(b"not an image")
    args = ["train", "--data", str(root), "--skip-bad-images", "--image-size", "32", "--epochs", "1", "--cut",
            "blocks.1", "--threads", "1", "--out", str(tmp_path / "runs"), "--quiet", "--batch-size", "4"]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert "broken\\xfe.png" in (run / "skipped_files.txt").read_text(encoding="utf-8")
    broken.unlink()  # evaluate reads the data again, without --skip-bad-images
    assert main(["evaluate", str(run)]) == 0  # the run directory is intact and the data is found again


# --- 13: broken and looping symbolic links ------------------------------------------------------------------------


def test_broken_and_looping_symlinks_are_counted_as_unreadable(tmp_path: Path) -> None:
    root = folder(tmp_path / "d", {"a": 6, "b": 6})
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "b" / "loop1.png").symlink_to(root / "b" / "loop2.png")
    (root / "b" / "loop2.png").symlink_to(root / "b" / "loop1.png")
    with pytest.raises(DataError, match=r"gone.png: a broken or looping symbolic link .* 2 more file\(s\) cannot be "
                                        r"read either: .*loop1.png, .*loop2.png"):
        load_dataset(str(root), image_size=8)
    ds = load_dataset(str(root), image_size=8, skip_bad_images=True)
    assert len(ds.skipped) == 3 and all("symbolic link" in s for s in ds.skipped)
    assert ds.source["skipped_files"] == 3


# --- image ids and external evaluation ----------------------------------------------------------------------------


def test_every_split_names_its_images(tmp_path: Path) -> None:
    root = folder(tmp_path / "d", {"train/a": 4, "train/b": 4, "test/a": 2, "test/b": 2})
    ds = load_dataset(str(root), image_size=12)  # native size: the images are the files' pixels
    assert ds.test.ids == ["test/a/0.png", "test/a/1.png", "test/b/0.png", "test/b/1.png"]
    assert sorted(ds.train.ids + ds.val.ids) == sorted(f"train/{c}/{i}.png" for c in "ab" for i in range(4))
    for i, name in enumerate(ds.test.ids):  # ids travel with their images
        assert torch.equal(ds.test.images[i, 0], torch.from_numpy(read_image(root / name)[..., 0].copy()))
    breast = load_dataset("breastmnist", download=False)
    assert breast.test.ids[17] == "test[17]"
    again = resplit(breast, (0.7, 0.1, 0.2), 0)
    pooled = {i: img for s in ("train", "val", "test") for i, img in zip(breast.split(s).ids, breast.split(s).images)}
    for s in ("train", "val", "test"):
        split = again.split(s)
        assert all(torch.equal(pooled[i], img) for i, img in zip(split.ids, split.images))


def test_csv_ids_are_the_paths_as_written(tmp_path: Path) -> None:
    for i in range(6):
        save(tmp_path / "img" / f"{i}.png", noise(i))
    csv = tmp_path / "m.csv"
    csv.write_text("path,label,split\n" + "".join(f"img/{i}.png,{'ab'[i % 2]},{'train' if i < 4 else 'test'}\n"
                                                   for i in range(6)))
    ds = load_dataset(str(csv), image_size=8, split=(0.5, 0.5, 0.0))
    assert ds.test.ids == ["img/4.png", "img/5.png"]


def test_external_evaluation_maps_a_subset_of_classes(tmp_path: Path) -> None:
    only_b = folder(tmp_path / "ext", {"b": 3})
    ds = load_dataset(str(only_b), image_size=8, classes=["a", "b"], all_test=True)
    assert ds.classes == ["a", "b"] and ds.task == "binary"
    assert (len(ds.train), len(ds.val), len(ds.test)) == (0, 0, 3) and ds.test.labels.tolist() == [1, 1, 1]
    assert ds.test.ids == ["b/0.png", "b/1.png", "b/2.png"] and ds.source["split"] is None
    odd = folder(tmp_path / "odd", {"b": 2, "zebra": 2})
    with pytest.raises(DataError, match=r"class folder\(s\) 'zebra' are not among the model's classes \['a', 'b'\]"):
        load_dataset(str(odd), image_size=8, classes=["a", "b"], all_test=True)
    breast = load_dataset("breastmnist", download=False, classes=["malignant", "normal, benign"], all_test=True)
    assert len(breast.test) == 780 and len(breast.train) == 0
    with pytest.raises(DataError, match="do not match the model's classes"):
        load_dataset("breastmnist", download=False, classes=["x", "y"])
