"""Data sets from image files: an ImageFolder tree or a CSV manifest, resized to one size at load."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import SPLITS, ImageDataset, Split
from .images import IMAGE_EXTENSIONS, is_image_file, load_images
from .splits import Fractions, assign_splits


def load_folder(root: Path, name: str, image_size: int, fractions: Fractions, seed: int) -> ImageDataset:
    """An ImageFolder tree: ``root/{train,val,test}/<class>/...`` (train required) or ``root/<class>/...``.

    Classes are the sorted class folder names (union over split folders); files are found recursively by extension,
    hidden files and folders are skipped.
    """
    subdirs = _visible_dirs(root)
    split_dirs = [d for d in subdirs if d.name in SPLITS]
    if split_dirs:
        others = [d.name for d in subdirs if d.name not in SPLITS]
        if others:
            raise DataError(
                f"{root} mixes split folders ({', '.join(d.name for d in split_dirs)}) with other folders "
                f"({', '.join(others)}); put the class folders inside train/, val/ and test/."
            )
        if "train" not in [d.name for d in split_dirs]:
            raise DataError(f"{root} has split folders but no train/ folder; the train split is required.")
        layout = [(d.name, d) for d in split_dirs]
    else:
        layout = [("train", root)]
    files: list[Path] = []
    class_of: list[str] = []
    split_of: list[str] = []
    class_names: set[str] = set()
    for split, base in layout:
        for class_dir in _visible_dirs(base):
            class_names.add(class_dir.name)
            for f in sorted(class_dir.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(class_dir).parts)
                if not hidden and is_image_file(f) and f.is_file():
                    files.append(f)
                    class_of.append(class_dir.name)
                    split_of.append(split)
    classes = sorted(class_names)
    found = set(class_of)
    empty = [c for c in classes if c not in found]
    if empty:
        raise DataError(
            f"{root}: class folder(s) {', '.join(empty)} contain no image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folders."
        )
    source = {"kind": "folder", "path": str(root.resolve()), "md5": None, "license": None, "citation": None}
    return _from_files(name, source, files, class_of, classes, split_of, image_size, fractions, seed)


def load_manifest(path: Path, name: str, image_size: int, fractions: Fractions, seed: int) -> ImageDataset:
    """A CSV manifest with header ``path,label`` and optional ``split`` (train/val/test) columns.

    Paths are relative to the CSV's folder (absolute paths are allowed). Labels are class names or integers;
    classes are the sorted unique labels (numerically sorted when all are integers). Errors name the line number
    in the file (the header is line 1).
    """
    files, labels, splits = _read_manifest(path)
    if all(_is_int(label) for label in labels):
        labels = [str(int(label)) for label in labels]
        classes = [str(v) for v in sorted({int(label) for label in labels})]
    else:
        classes = sorted(set(labels))
    source = {"kind": "csv", "path": str(path.resolve()), "md5": None, "license": None, "citation": None}
    return _from_files(name, source, files, labels, classes, splits, image_size, fractions, seed)


def _read_manifest(path: Path) -> tuple[list[Path], list[str], list[str] | None]:
    files: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {c.strip().lower(): c for c in reader.fieldnames or [] if c}
            if "path" not in columns or "label" not in columns:
                raise DataError(
                    f"{path}: the header (line 1) must name the columns 'path' and 'label' (and optionally 'split'), "
                    f"found {reader.fieldnames}."
                )
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                value = {key: (row.get(col) or "").strip() for key, col in columns.items()}
                if not value["path"]:
                    raise DataError(f"{where}: the path is empty; give an image path or remove the row.")
                file = Path(value["path"]).expanduser()
                file = file if file.is_absolute() else path.parent / file
                if not file.is_file():
                    raise DataError(
                        f"{where}: image {value['path']!r} not found (looked for {file}); fix the path (relative paths "
                        "are resolved against the CSV's folder) or remove the row."
                    )
                if not value["label"]:
                    raise DataError(f"{where}: the label is empty; give a class name or index.")
                if "split" in columns and value["split"].lower() not in SPLITS:
                    raise DataError(
                        f"{where}: unknown split {value['split']!r}; use one of {', '.join(SPLITS)}."
                    )
                files.append(file)
                labels.append(value["label"])
                splits.append(value.get("split", "train").lower())
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as a UTF-8 CSV file ({e}).") from e
    if not files:
        raise DataError(f"{path}: the manifest has no data rows.")
    return files, labels, splits if "split" in columns else None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _from_files(
    name: str,
    source: dict[str, object],
    files: Sequence[Path],
    class_of: Sequence[str],
    classes: list[str],
    given: Sequence[str] | None,
    image_size: int,
    fractions: Fractions,
    seed: int,
) -> ImageDataset:
    """Load every file once, split the items and build the data set."""
    if len(classes) < 2:
        raise DataError(f"{source['path']}: found only the class(es) {classes}; classification needs at least two.")
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in class_of], dtype=np.int64)
    parts = assign_splits(labels, given, fractions, seed, source["path"])
    images = load_images(files, image_size)
    label_tensor = torch.from_numpy(labels)
    splits = {s: Split(images[torch.from_numpy(i)], label_tensor[torch.from_numpy(i)]) for s, i in parts.items()}
    source.update(image_size=image_size, split=list(fractions), seed=seed)
    task = "binary" if len(classes) == 2 else "multiclass"
    return ImageDataset(name, task, classes, splits["train"], splits["val"], splits["test"], source)
