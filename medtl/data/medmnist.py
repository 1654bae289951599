"""MedMNIST data sets (2D and 3D) by name, the built-in BreastMNIST and AdrenalMNIST3D copies, and ``.npz`` files in
MedMNIST layout.

Files are md5-verified against ``medmnist.INFO`` before use; arrays are kept at their native size.
"""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import medmnist
import medmnist.info
import numpy as np
import torch

from ..errors import ConfigError, DataError, unknown
from .dataset import SPLITS, ImageDataset, Split
from .readers.npz import read_npz
from .splits import GIVEN
from .text import printable

SIZES = (28, 64, 128, 224)
SIZES_3D = (28, 64)
TASKS = {
    "binary-class": "binary",
    "multi-class": "multiclass",
    "ordinal-regression": "multiclass",
    "multi-label, binary-class": "multilabel",
}
BUILTIN = {("breastmnist", 28): Path(__file__).parent / "builtin" / "breastmnist.npz",
           ("adrenalmnist3d", 28): Path(__file__).parent / "builtin" / "adrenalmnist3d.npz"}
CITATION = (
    "Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter Pfister, Bingbing Ni. "
    "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image classification. "
    "Scientific Data 10, 41 (2023). Jiancheng Yang, Rui Shi, Bingbing Ni. MedMNIST Classification Decathlon: "
    "A Lightweight AutoML Benchmark for Medical Image Analysis. IEEE ISBI 2021."
)
CITATION_PLUS = (
    " Sebastian Doerrich, Francesco Di Salvo, Julius Brockmann, Christian Ledig. Rethinking model prototyping "
    "through the MedMNIST+ dataset collection. Scientific Reports (2025), arXiv:2404.15786."
)
SOURCE_CITATIONS = {
    "breastmnist": " Source data: Walid Al-Dhabyani, Mohammed Gomaa, Hussien Khaled, Aly Fahmy. Dataset of breast "
    "ultrasound images. Data in Brief 28, 104863 (2020).",
}
NAME = re.compile(r"(?P<flag>[a-z0-9]+?)(?:_(?P<size>\d+))?")


def parse_name(spec: str) -> tuple[str, int] | None:
    """``(flag, size)`` when ``spec`` names a MedMNIST data set (``pneumoniamnist``, ``pneumoniamnist_64``,
    ``adrenalmnist3d_64``), else None.

    Raises ConfigError for a size MedMNIST does not publish.
    """
    match = NAME.fullmatch(spec.strip().lower())
    if not match or match["flag"] not in medmnist.INFO:
        return None
    flag, size = match["flag"], int(match["size"] or 28)
    published = SIZES_3D if flag.endswith("3d") else SIZES
    if size not in published:
        sizes = ", ".join(map(str, published))
        raise ConfigError(f"MedMNIST has no size {size} for {flag}; use one of {sizes} (28: no suffix).")
    return flag, size


def unknown_name(spec: str) -> ConfigError:
    """The error for a name that is neither a MedMNIST data set nor an existing path."""
    error = unknown("MedMNIST data set", spec, list(medmnist.INFO))
    return ConfigError(f"{error} A data set can also be a folder, a .csv manifest or a .npz file; no such path exists.")


def default_root() -> Path | None:
    """medmnist's download folder (``~/.medmnist``), read at call time so that it can be redirected."""
    root = medmnist.info.DEFAULT_ROOT
    return Path(root) if root else None


def load_medmnist(flag: str, size: int, root: str | Path | None, download: bool) -> ImageDataset:
    """A MedMNIST data set from ``root``, else ``~/.medmnist``, else the built-in copy, else downloaded."""
    info = medmnist.INFO[flag]
    suffix = "" if size == 28 else f"_{size}"
    file_name, url, md5 = f"{flag}{suffix}.npz", info[f"url{suffix}"], info[f"MD5{suffix}"]
    path, kind = _locate(flag, size, file_name, root, download)
    data = path.read_bytes()
    digest = hashlib.md5(data).hexdigest()
    if digest != md5:
        raise DataError(
            f"{path}: md5 {digest} does not match MedMNIST's {md5} for {file_name}; the file is corrupt or from "
            f"another release. Delete it and download it again from {url}, or load it as a plain .npz path."
        )
    arrays = read_npz(io.BytesIO(data), str(path))
    multilabel = TASKS[info["task"]] == "multilabel"
    classes = [info["label"][str(i)] for i in range(len(info["label"]))]
    source = {
        "kind": kind,
        "path": str(path),
        "md5": digest,
        "url": url,
        "license": info["license"],
        "citation": CITATION + (CITATION_PLUS if size != 28 else "") + SOURCE_CITATIONS.get(flag, ""),
        **GIVEN,
    }
    splits = _splits(arrays, multilabel, str(path))
    return ImageDataset(f"{flag}{suffix}", TASKS[info["task"]], classes, *splits, source)


def _locate(flag: str, size: int, file_name: str, root: str | Path | None, download: bool) -> tuple[Path, str]:
    """The file's path and source kind ("medmnist" or "builtin"), downloading it into the first folder if allowed."""
    folders = [Path(d).expanduser() for d in (root, default_root()) if d]
    for folder in folders:
        if (folder / file_name).is_file():
            return folder / file_name, "medmnist"
    if (flag, size) in BUILTIN:
        return BUILTIN[flag, size], "builtin"
    url = medmnist.INFO[flag]["url" if size == 28 else f"url_{size}"]
    target = folders[0] if folders else None
    hint = f"Download it from {url} and put it in {target or 'a folder passed as root'}/."
    if not download or target is None:
        raise DataError(f"MedMNIST file {file_name} is not available offline. {hint}")
    try:
        target.mkdir(parents=True, exist_ok=True)
        dataset_class = getattr(medmnist, medmnist.INFO[flag]["python_class"])
        dataset_class(split="train", root=str(target), download=True, size=size)
    except Exception as e:  # noqa: BLE001 -- medmnist raises RuntimeError, the network anything
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"MedMNIST file {file_name} could not be downloaded ({reason}). {hint}") from e
    return target / file_name, "medmnist"


def load_npz(path: Path, name: str) -> ImageDataset:
    """A ``.npz`` file in MedMNIST layout; the task and class count are inferred from its labels."""
    data = path.read_bytes()
    arrays = read_npz(io.BytesIO(data), printable(path))
    labels = [arrays[f"{s}_labels"] for s in SPLITS]
    for split, y in zip(SPLITS, labels):  # before max() and int(): NaN and text must not surface as a traceback
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.isfinite(y).all()
                                              and (y == np.round(y)).all()):
            raise DataError(f"{printable(path)}: {split}_labels must hold whole-number class indices; found "
                            f"{'NaN or infinite values' if y.dtype.kind == 'f' else f'{y.dtype} values'}. Map the "
                            "labels to 0..K-1 (or 0/1 columns for multi-label) and save the file again.")
    for split, y in zip(SPLITS, labels):
        images = arrays[f"{split}_images"]
        if len(y) != len(images):
            raise DataError(f"{printable(path)}: {split}_images holds {len(images)} images but {split}_labels "
                            f"{len(y)} labels; each image needs exactly one label row.")
    if not labels[0].size:
        raise DataError(f"{printable(path)}: train_labels is empty; the train split is required.")
    widths = {y.shape[1] if y.ndim == 2 else 1 for y in labels}
    if len(widths) != 1:
        raise DataError(f"{printable(path)}: the label arrays have different widths {sorted(widths)} across splits.")
    width = widths.pop()
    if width > 1:
        if not all(np.isin(y, (0, 1)).all() for y in labels):
            raise DataError(f"{printable(path)}: labels of shape (N, {width}) must be 0/1 (multi-label); found other "
                            "values.")
        task, count = "multilabel", width
    else:
        count = max(int(y.max()) + 1 for y in labels if y.size)  # negative labels are refused by _labels
        images = sum(len(y) for y in labels)
        if count > images:  # one class name per index is made below: a label of 10**9 must not allocate 10**9
            split, top = max(((s, int(y.max())) for s, y in zip(SPLITS, labels) if y.size), key=lambda t: t[1])
            raise DataError(f"{printable(path)}: {split}_labels holds the label {top}, but labels are class indices "
                            f"0..K-1 and the file has only {images} images; fix the labels (remap them to 0..K-1).")
        if count < 2:
            raise DataError(f"{printable(path)}: the labels hold only one class; classification needs at least two.")
        task = "binary" if count == 2 else "multiclass"
    source = {"kind": "npz", "path": printable(path.resolve()), "md5": hashlib.md5(data).hexdigest(), "license": None,
              "citation": None, **GIVEN}
    splits = _splits(arrays, task == "multilabel", str(path))
    return ImageDataset(name, task, [str(i) for i in range(count)], *splits, source)


def _splits(arrays: dict[str, np.ndarray], multilabel: bool, where: str) -> list[Split]:
    return [
        Split(
            _images(arrays[f"{s}_images"], f"{where} [{s}_images]"),
            _labels(arrays[f"{s}_labels"], multilabel, f"{where} [{s}_labels]"),
        )
        for s in SPLITS
    ]


def _images(a: np.ndarray, where: str) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, H, W, 1|3)`` → ``(N, C, H, W)``; volumes ``(N, D, H, W)`` (the last axis not 1 or 3, as
    MedMNIST 3D stores them) or ``(N, D, H, W, 1|3)`` → ``(N, C, D, H, W)``: uint8 kept, uint16 and [0, 1] floats →
    float32."""
    if a.ndim == 3 or a.ndim == 4 and a.shape[-1] not in (1, 3):
        a = a[:, None]
    elif a.ndim in (4, 5) and a.shape[-1] in (1, 3):
        a = np.moveaxis(a, -1, 1)
    else:
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, H, W, 1|3), or volumes (N, D, H, W) or "
                        f"(N, D, H, W, 1|3), got {a.shape}.")
    if a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535
    elif a.dtype.kind == "f" and (not a.size or (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1)):
        a = a.astype(np.float32)
    elif a.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8, uint16 or floats in [0, 1], got {a.dtype}.")
    return torch.from_numpy(np.ascontiguousarray(a))


def _labels(y: np.ndarray, multilabel: bool, where: str) -> torch.Tensor:
    """``(N, 1)``/``(N,)`` → ``(N,)`` int64 class indices, or ``(N, L)`` → float32 0/1 for multi-label."""
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.array_equal(y, np.round(y))):
        raise DataError(f"{where}: labels must be integers, got {y.dtype}.")
    if multilabel:
        return torch.from_numpy(y.astype(np.float32).reshape(len(y), -1))
    if y.ndim == 2 and y.shape[1] != 1 or y.ndim > 2:
        raise DataError(f"{where}: single-label labels must have shape (N,) or (N, 1), got {y.shape}.")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: labels must be class indices >= 0, found {y.min()}.")
    return torch.from_numpy(y.reshape(-1).astype(np.int64))
