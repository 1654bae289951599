"""Data sets held in memory as tensors: MedMNIST (2D), the built-in BreastMNIST, image folders, CSV manifests, .npz."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from .augment import Preprocess
from .dataset import SPLITS, ImageDataset, Split
from .folder import load_folder, load_manifest
from .images import IMAGE_EXTENSIONS, read_image
from .medmnist import load_medmnist, load_npz, parse_name, unknown_name
from .splits import check_fractions

DEFAULT_DATASET = "breastmnist"

__all__ = [
    "DEFAULT_DATASET",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "ImageDataset",
    "Preprocess",
    "Split",
    "load_dataset",
    "read_image",
]


def load_dataset(
    spec: str,
    *,
    root: str | None = None,
    image_size: int = 224,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    download: bool = True,
    skip_bad_images: bool = False,
) -> ImageDataset:
    """Load a data set named or located by ``spec``, resolved in this order:

    1. a 2D MedMNIST name, optionally with a size suffix (``breastmnist``, ``pneumoniamnist_64``); the file is taken
       from ``root``, else ``~/.medmnist``, else (``breastmnist`` at 28 px) the copy built into the package, else
       downloaded into ``root`` (or ``~/.medmnist``) when ``download``; it is md5-verified and kept at native size;
    2. a ``.npz`` file in MedMNIST layout (``train_images`` ... ``test_labels``);
    3. a folder: ``{train,val,test}/<class>/*`` (train required) or ``<class>/*``;
    4. a ``.csv`` manifest with columns ``path,label`` and optionally ``split``.

    Folder and CSV images are resized to ``image_size`` at load. Splits they do not give are drawn stratified from
    train with the ``split`` fractions (train, val, test) and ``seed``; the same seed gives the same split.
    ``root`` only applies to MedMNIST names. Unreadable folder or CSV images fail the load, naming the files; with
    ``skip_bad_images`` they are left out and listed in the data set's ``skipped``.
    """
    fractions = check_fractions(split)
    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1, got {image_size}")
    name = parse_name(spec)
    if name is not None:
        return load_medmnist(*name, root=root, download=download)
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir():
        return load_folder(path, spec, image_size, fractions, seed, skip_bad_images)
    if path.is_file() and suffix == ".npz":
        return load_npz(path, spec)
    if path.is_file() and suffix == ".csv":
        return load_manifest(path, spec, image_size, fractions, seed, skip_bad_images)
    if path.exists():
        raise DataError(f"{spec}: unsupported data set file; give a folder, a .csv manifest or a .npz file.")
    if suffix in (".npz", ".csv") or "/" in spec or "\\" in spec:
        raise DataError(f"{spec}: no such file or folder.")
    raise unknown_name(spec)
