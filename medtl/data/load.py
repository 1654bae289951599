"""``load_dataset``: a data set named or located by a string (MedMNIST name, .npz, folder, CSV manifest)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, DataError
from .dataset import ImageDataset
from .folder import load_folder, load_manifest
from .images import MAX_PIXELS
from .medmnist import load_medmnist, load_npz, parse_name, unknown_name
from .readers import Reading
from .splits import as_test_only, check_fractions
from .text import printable


def load_dataset(
    spec: str,
    *,
    root: str | None = None,
    image_size: int = 224,
    split: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    download: bool = True,
    skip_bad_images: bool = False,
    group_by: str | None = None,
    classes: Sequence[str] | None = None,
    all_test: bool = False,
    reading: Reading = Reading(),
) -> ImageDataset:
    """Load a data set named or located by `spec` into memory.

    `spec` is resolved in this order:

    1. a MedMNIST name, optionally with a size suffix (`breastmnist`, `pneumoniamnist_64`, `adrenalmnist3d_64`);
       the file is taken from `root`, else `~/.medmnist`, else (`breastmnist` and `adrenalmnist3d` at 28) the copy
       built into the package, else downloaded into `root` (or `~/.medmnist`) when `download`; it is md5-verified
       and kept at native size;
    2. a `.npz` file in MedMNIST layout (`train_images` ... `test_labels`);
    3. a folder: `<split>/<class>/*` (train required; split folders are `train`/`training`,
       `val`/`valid`/`validation`, `test`/`testing` in any case) or `<class>/*`;
    4. a `.csv` manifest with columns `path,label` and optionally `split` and a group column.

    Splits the data does not give are drawn stratified from train; `source["splits"]`, `source["split_note"]` and
    `source["split"]` of the result record which splits were given and how the others were drawn.

    Args:
        spec: a MedMNIST name, or the path of a folder, `.csv` or `.npz`.
        root: where MedMNIST files are (MedMNIST names only).
        image_size: folder and CSV images are resized to it at load; volume files (NIfTI, DICOM series) to a cube
            of it.
        split: train, val, test fractions of the splits drawn when the data does not give them.
        seed: seed of the drawn splits; the same seed gives the same split.
        download: download a missing MedMNIST file.
        skip_bad_images: leave unreadable folder or CSV images out (listed in the data set's `skipped`) instead of
            failing with a `DataError` that names them.
        group_by: a CSV column of patient or study ids (default: a column named `group`, if present), or for DICOM
            files the attribute it names (`PatientID`, `StudyInstanceUID`; stored as salted hashes); each group
            stays on one side of every drawn split.
        classes: external evaluation: a trained model's class names, in its order; a folder's class folders or a
            CSV's labels are mapped onto it, so a folder may hold only some of the classes, even one. A name not in
            `classes` is a `DataError`. For `.npz` and MedMNIST data the labels are already indices: `classes` must
            list at least as many classes (MedMNIST: the same names).
        all_test: every image (of every given split) goes to the test split and train and val are empty, so that
            `medtl evaluate RUN --data FOLDER` scores every image of an external folder; nothing is drawn.
        reading: how files are read: intensity window, voxel spacing, the DICOM 2D/3D rule
            (`medtl.data.readers`).

    Returns:
        The data set, held in memory as tensors.

    Raises:
        DataError: a file, row or label cannot be used (the message names it).
        ConfigError: an option is invalid.
    """
    fractions = check_fractions(split)
    if image_size < 1:
        raise ConfigError(f"image_size must be >= 1, got {image_size}")
    if image_size * image_size > MAX_PIXELS:
        raise ConfigError(f"image_size {image_size} means {image_size ** 2:,} pixels per image, above medtl's limit of "
                          f"{MAX_PIXELS:,}; use a smaller image size.")
    name = parse_name(spec)
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if group_by is not None and not (name is None and (path.is_dir() or path.is_file() and suffix == ".csv")):
        raise ConfigError(f"group_by {group_by!r} names a column of a CSV manifest or a DICOM attribute of a folder's "
                          f"files, but {printable(spec)} is neither; give a .csv with a patient or study id column, or "
                          "a folder of DICOM files, to draw group-disjoint splits.")
    if name is not None:
        data = load_medmnist(*name, root=root, download=download)
    elif path.is_dir():
        return load_folder(path, printable(spec), image_size, fractions, seed, skip_bad_images, classes, all_test,
                           reading, group_by)
    elif path.is_file() and suffix == ".npz":
        data = load_npz(path, printable(spec))
    elif path.is_file() and suffix == ".csv":
        return load_manifest(path, printable(spec), image_size, fractions, seed, skip_bad_images, classes, all_test,
                             group_by, reading)
    elif path.exists():
        raise DataError(f"{printable(spec)}: unsupported data set file; give a folder, a .csv manifest or a .npz file.")
    elif suffix in (".npz", ".csv") or "/" in spec or "\\" in spec:
        raise DataError(f"{printable(spec)}: no such file or folder.")
    else:
        raise unknown_name(spec)
    if classes is not None:
        data = _with_classes(data, list(classes))
    return as_test_only(data) if all_test else data


def _with_classes(data: ImageDataset, classes: list[str]) -> ImageDataset:
    """An array data set (labels are indices) named with a model's ``classes``."""
    fits = data.classes == classes if data.source["kind"] != "npz" else data.num_classes <= len(classes)
    if not fits or data.task == "multilabel" and data.num_classes != len(classes):
        raise DataError(f"{data.name} has the classes {data.classes}, which do not match the model's classes "
                        f"{classes}.")
    task = data.task if data.task == "multilabel" else "binary" if len(classes) == 2 else "multiclass"
    return ImageDataset(data.name, task, classes, data.train, data.val, data.test, data.source, data.skipped)
