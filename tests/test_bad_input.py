"""Bad input stops `medtl train` early (before a run directory exists) with exit status 2, no traceback, and a
message that names the file, row or option and says what to do; messy but usable input trains, with notes."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST_ARGS, ROOT, noise, save

from medtl.cli import main

FAST = FAST_ARGS


def image_folder(root: Path, classes: dict[str, int] | None = None) -> Path:
    """``root/<class>/<i>.png`` with ``classes[name]`` images each (default: a and b, 6 each)."""
    for c, (name, n) in enumerate((classes or {"a": 6, "b": 6}).items()):
        for i in range(n):
            save(root / name / f"{i}.png", noise(100 * c + i))
    return root


def manifest(tmp: Path, rows: list[str], header: str = "path,label") -> Path:
    """A CSV whose rows may use ``img/<i>.png`` (i < 12, created here); the header is line 1."""
    for i in range(12):
        save(tmp / "img" / f"{i}.png", noise(i))
    path = tmp / "m.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def labelled(labels: list[str]) -> list[str]:
    return [f"img/{i}.png,{label}" for i, label in enumerate(labels)]


def corrupt_images(tmp: Path) -> tuple[list[str], list[str]]:
    root = image_folder(tmp / "data")
    (root / "b" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "b" / "4.png").write_bytes((root / "a" / "0.png").read_bytes()[:60])  # truncated
    return ["--data", str(root)], [str(root / "b" / "3.png"), "1 more file", str(root / "b" / "4.png"),
                                   "--skip-bad-images"]


def unsupported_data_file(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "images.zip").write_bytes(b"PK\x03\x04")
    return ["--data", str(tmp / "images.zip")], [str(tmp / "images.zip"), "unsupported data set file", ".csv"]


def folder_of_dicoms(tmp: Path) -> tuple[list[str], list[str]]:
    root = image_folder(tmp / "data", {"a": 6})
    for i in range(3):
        (root / "b" / f"{i}.dcm").parent.mkdir(exist_ok=True)
        (root / "b" / f"{i}.dcm").write_bytes(b"\x00" * 128 + b"DICM")
    # files marked DICM without a modality or slice position: neither 2D images nor a series, by the printed rule
    return ["--data", str(root)], [str(root / "b" / "0.dcm"), "neither 2D images nor slices of a volume", "--dicom 2d"]


def csv_row_in_unsupported_format(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "scan.mha").write_bytes(b"ObjectType = Image\n")
    path = manifest(tmp, labelled(["a", "b"] * 5) + ["scan.mha,a"])
    return ["--data", str(path)], [str(tmp / "scan.mha"), "unsupported format '.mha'", "Convert"]


def csv_missing_path(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["a", "b", "a", "b"]) + ["img/missing.png,a"])
    return ["--data", str(path)], [f"{path}, line 6", "'img/missing.png' not found"]


def csv_empty_path(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["a", "b"]) + [",a"])
    return ["--data", str(path)], [f"{path}, line 4", "path is empty"]


def csv_empty_label(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["a", "b", ""]))
    return ["--data", str(path)], [f"{path}, line 4", "label is empty"]


def csv_nan_label(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["a", "b", "NaN", "a"]))
    return ["--data", str(path)], [f"{path}, line 4", "missing value"]


def csv_labels_mix_numbers_and_names(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["0", "1", "0", "1", "benign", "0"]))
    return ["--data", str(path)], [str(path), "line 2: '0'", "line 6: 'benign'", "mix numbers and names"]


def csv_fractional_label(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["0", "1", "0.5", "1"]))
    return ["--data", str(path)], [f"{path}, line 4", "'0.5' is not a whole number"]


def csv_unknown_label_in_test_rows(tmp: Path) -> tuple[list[str], list[str]]:
    rows = [f"img/{i}.png,{'ab'[i % 2]},{['train', 'train', 'val', 'test'][i % 4]}" for i in range(11)]
    path = manifest(tmp, [*rows, "img/11.png,bengin,test"], header="path,label,split")
    return ["--data", str(path)], [f"{path}, line 13", "'bengin' appears in no train row"]


def csv_label_on_one_row(tmp: Path) -> tuple[list[str], list[str]]:
    path = manifest(tmp, labelled(["a", "b"] * 5 + ["bengin"]))
    return ["--data", str(path)], [f"{path}, line 12", "'bengin' occurs on this line only"]


def class_missing_from_train(tmp: Path) -> tuple[list[str], list[str]]:
    root = tmp / "data"
    image_folder(root / "train", {"a": 6, "b": 6})
    image_folder(root / "test", {"a": 2, "b": 2, "c": 2})
    return ["--data", str(root)], [str(root), "['c'] have no training images"]


def single_class_validation_split(tmp: Path) -> tuple[list[str], list[str]]:
    root = tmp / "data"
    image_folder(root / "train", {"a": 6, "b": 6})
    image_folder(root / "val", {"a": 3})
    image_folder(root / "test", {"a": 2, "b": 2})
    return ["--data", str(root)], [str(root), "val split holds a single class", "AUROC/AUPRC are undefined"]


def one_training_image(tmp: Path) -> tuple[list[str], list[str]]:
    def split(n: int) -> dict[str, np.ndarray]:
        return {"images": noise(n, (n, 28, 28)), "labels": np.eye(2, dtype=np.uint8)[np.arange(n) % 2]}

    path = tmp / "tiny.npz"
    np.savez(path, **{f"{s}_{k}": v for s, n in (("train", 1), ("val", 4), ("test", 4)) for k, v in split(n).items()})
    return ["--data", str(path)], [str(path), "training split has 1 image"]


def unknown_medmnist_name(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--data", "pneumoniamnst"], ["unknown MedMNIST data set 'pneumoniamnst'", "Did you mean 'pneumoniamnist'"]


def unknown_backbone(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--backbone", "resnet5"], ["'resnet5'", "Did you mean", "'resnet50'"]


def unknown_strategy(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--strategy", "trunkated"], ["'trunkated'", "Did you mean 'truncated'"]


def unknown_cut(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--cut", "blocks.99"], ["unknown cut", "'blocks.99'"]


def image_size_too_small_for_cut(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--cut", "conv_head", "--image-size", "8"], ["image size of 8 px is too small", "--image-size"]


def batch_of_one(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--batch-size", "1"], ["batch_size must be at least 2"]


def config_value_of_wrong_type(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "c.yaml").write_text("epochs: 2\nlr: fast\n")
    return ["--config", str(tmp / "c.yaml")], [f"lr in {tmp / 'c.yaml'}", "must be a number", "'fast'"]


def config_unknown_key(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "c.yaml").write_text("epoch: 2\n")
    return ["--config", str(tmp / "c.yaml")], [str(tmp / "c.yaml"), "'epoch'", "Did you mean 'epochs'"]


def unavailable_device(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--device", f"cuda:{torch.cuda.device_count()}"], ["not available here", "--device cpu"]


def missing_weights_file(tmp: Path) -> tuple[list[str], list[str]]:
    return ["--weights", str(tmp / "nope.pth")], [str(tmp / "nope.pth"), "does not exist"]


def damaged_weights_file(tmp: Path) -> tuple[list[str], list[str]]:
    (tmp / "w.safetensors").write_bytes(b"\xff" * 64)
    return ["--weights", str(tmp / "w.safetensors")], [str(tmp / "w.safetensors"), "not a valid safetensors file"]


CASES: list[Callable[[Path], tuple[list[str], list[str]]]] = [
    corrupt_images, unsupported_data_file, folder_of_dicoms, csv_row_in_unsupported_format, csv_missing_path,
    csv_empty_path, csv_empty_label, csv_nan_label, csv_labels_mix_numbers_and_names, csv_fractional_label,
    csv_unknown_label_in_test_rows, csv_label_on_one_row, class_missing_from_train, single_class_validation_split,
    one_training_image, unknown_medmnist_name, unknown_backbone, unknown_strategy, unknown_cut,
    image_size_too_small_for_cut, batch_of_one, config_value_of_wrong_type, config_unknown_key, unavailable_device,
    missing_weights_file, damaged_weights_file,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_exits_2_early_naming_the_file_or_row(case, tmp_path: Path, capsys) -> None:
    args, expected = case(tmp_path)
    out = tmp_path / "runs"
    assert main(["train", *FAST, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medtl: error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert not out.exists() or not any(out.iterdir()), "a run directory was created before the error"


@pytest.mark.slow  # a fresh interpreter importing torch and medtl (seconds)
def test_bad_input_in_a_real_process_exits_2_without_traceback(tmp_path: Path) -> None:
    args, expected = corrupt_images(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "medtl", "train", *FAST, *args, "--out", str(tmp_path / "runs")],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert all(text in proc.stderr for text in expected), proc.stderr


@pytest.mark.slow
def test_messy_folder_trains_with_notes(tmp_path: Path, capsys) -> None:
    """Mixed sizes, bit depths and colour modes, two unreadable files, fewer images than a batch: the run goes
    through, the images are resized and converted, and every problem is reported."""
    root = tmp_path / "messy"
    for c, name in enumerate(("benign", "malignant")):
        for i in range(8):
            shape, dtype = [((10, 10), np.uint8), ((300, 40), np.uint16), ((64, 64, 3), np.uint8),
                            ((33, 17, 4), np.uint8)][i % 4]
            save(root / name / f"{i}.{'png' if i % 2 else 'tif'}", noise(10 * c + i, shape, dtype))
        (root / name / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "runs"
    assert main(["train", *FAST, "--data", str(root), "--skip-bad-images", "--batch-size", "64",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "medtl: warning: skipped 2 unreadable image file(s)" in err
    assert str(root / "benign" / "broken.jpg") in err and str(root / "malignant" / "broken.jpg") in err
    assert "mix 8-bit and 16-bit" in err
    assert "fewer than the batch size 64" in err
    (run,) = out.iterdir()
    skipped = (run / "skipped_files.txt").read_text().splitlines()
    assert len(skipped) == 2 and all("broken.jpg" in line for line in skipped)
    assert "skip_bad_images: true" in (run / "config.yaml").read_text()
