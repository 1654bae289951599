"""Data sets from image files: an ImageFolder tree or a CSV manifest, resized to one size at load."""
from __future__ import annotations

import csv
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, MedtlWarning
from .dataset import SPLITS, ImageDataset, Split
from .images import IMAGE_EXTENSIONS, is_image_file, load_images
from .splits import Fractions, assign_splits


def load_folder(root: Path, name: str, image_size: int, fractions: Fractions, seed: int,
                skip_bad: bool = False) -> ImageDataset:
    """An ImageFolder tree: ``root/{train,val,test}/<class>/...`` (train required) or ``root/<class>/...``.

    Classes are the sorted class folder names (union over split folders); files are found recursively by extension,
    hidden files and folders are skipped. Files of other types are ignored with a warning that counts them, since
    a folder of DICOMs silently read as "no images" would be a mystery.
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
    ignored: Counter[str] = Counter()
    for split, base in layout:
        for class_dir in _visible_dirs(base):
            class_names.add(class_dir.name)
            for f in sorted(class_dir.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(class_dir).parts)
                if hidden or not f.is_file():
                    continue
                if is_image_file(f):
                    files.append(f)
                    class_of.append(class_dir.name)
                    split_of.append(split)
                else:
                    ignored[f.suffix.lower() or "(no extension)"] += 1
    classes = sorted(class_names)
    found = set(class_of)
    empty = [c for c in classes if c not in found]
    kinds = ", ".join(f"{n} {suffix}" for suffix, n in ignored.most_common())
    if empty:
        raise DataError(
            f"{root}: class folder(s) {', '.join(empty)} contain no image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}){f'; found only unsupported files ({kinds})' if ignored else ''}; "
            "add images (convert other formats, e.g. DICOM, to PNG) or remove the folders."
        )
    if ignored:
        warnings.warn(f"{root}: ignored {sum(ignored.values())} file(s) that are not supported images ({kinds}).",
                      MedtlWarning, stacklevel=3)
    source = {"kind": "folder", "path": str(root.resolve()), "md5": None, "license": None, "citation": None}
    return _from_files(name, source, files, class_of, classes, split_of, image_size, fractions, seed, skip_bad)


def load_manifest(path: Path, name: str, image_size: int, fractions: Fractions, seed: int,
                  skip_bad: bool = False) -> ImageDataset:
    """A CSV manifest with header ``path,label`` and optional ``split`` (train/val/test) columns.

    Paths are relative to the CSV's folder (absolute paths are allowed). Labels are class names or integers;
    classes are the sorted unique labels (numerically sorted when all are integers). Errors name the line number
    in the file (the header is line 1).
    """
    files, labels, splits, lines = _read_manifest(path)
    labels, classes = _manifest_classes(path, labels, lines)
    _check_rare_labels(path, labels, splits, lines)
    source = {"kind": "csv", "path": str(path.resolve()), "md5": None, "license": None, "citation": None}
    return _from_files(name, source, files, labels, classes, splits, image_size, fractions, seed, skip_bad)


def _manifest_classes(path: Path, labels: list[str], lines: list[int]) -> tuple[list[str], list[str]]:
    """Labels and sorted classes: all class indices (integers, sorted numerically) or all class names.

    A mix is refused: "1" next to "benign" is nearly always a half-converted column, not a class called "1".
    """
    numbers = [_number(label) for label in labels]
    if all(n is None for n in numbers):
        return labels, sorted(set(labels))
    if any(n is None for n in numbers):
        i = next(i for i, n in enumerate(numbers) if n is not None)
        j = next(j for j, n in enumerate(numbers) if n is None)
        raise DataError(
            f"{path}: the labels mix numbers and names (line {lines[i]}: {labels[i]!r}, line {lines[j]}: "
            f"{labels[j]!r}); use class names throughout or class indices throughout."
        )
    for label, n, line in zip(labels, numbers, lines):
        if not n.is_integer():  # type: ignore[union-attr]
            raise DataError(f"{path}, line {line}: label {label!r} is not a whole number; numeric labels are class "
                            "indices (0, 1, ...), not scores.")
    indices = [int(n) for n in numbers]  # type: ignore[arg-type]
    return [str(i) for i in indices], [str(i) for i in sorted(set(indices))]


def _check_rare_labels(path: Path, labels: list[str], splits: list[str] | None, lines: list[int]) -> None:
    """Refuse a label the model could never learn or that cannot be split: usually a typo ("bengin")."""
    if splits is not None:
        trained = {label for label, split in zip(labels, splits) if split == "train"}
        for label, line in zip(labels, lines):
            if label not in trained:
                raise DataError(f"{path}, line {line}: label {label!r} appears in no train row, so no model can learn "
                                "it (a typo?); fix the label or add training rows of that class.")
        return
    counts = Counter(labels)
    for label, line in zip(labels, lines):
        if counts[label] == 1:
            raise DataError(f"{path}, line {line}: label {label!r} occurs on this line only (a typo?); a class needs "
                            "at least 2 images to be split into train/val/test. Fix the label or add images.")


def _read_manifest(path: Path) -> tuple[list[Path], list[str], list[str] | None, list[int]]:
    files: list[Path] = []
    labels: list[str] = []
    splits: list[str] = []
    lines: list[int] = []
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
                if value["label"].lower() == "nan":
                    raise DataError(f"{where}: the label is {value['label']!r}, a missing value; give a class name or "
                                    "index, or remove the row.")
                if "split" in columns and value["split"].lower() not in SPLITS:
                    raise DataError(
                        f"{where}: unknown split {value['split']!r}; use one of {', '.join(SPLITS)}."
                    )
                files.append(file)
                labels.append(value["label"])
                splits.append(value.get("split", "train").lower())
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot parse as a UTF-8 CSV file ({e}).") from e
    if not files:
        raise DataError(f"{path}: the manifest has no data rows.")
    return files, labels, splits if "split" in columns else None, lines


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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
    skip_bad: bool,
) -> ImageDataset:
    """Load every file once (leaving out unreadable ones if ``skip_bad``), split the items, build the data set."""
    if len(classes) < 2:
        raise DataError(f"{source['path']}: found only the class(es) {classes}; classification needs at least two.")
    images, bad = load_images(files, image_size, skip_bad)
    kept = [i for i in range(len(files)) if i not in bad]
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[class_of[i]] for i in kept], dtype=np.int64)
    parts = assign_splits(labels, None if given is None else [given[i] for i in kept], fractions, seed,
                          source["path"])
    label_tensor = torch.from_numpy(labels)
    splits = {s: Split(images[torch.from_numpy(i)], label_tensor[torch.from_numpy(i)]) for s, i in parts.items()}
    source.update(image_size=image_size, split=list(fractions), seed=seed, skipped_files=len(bad))
    task = "binary" if len(classes) == 2 else "multiclass"
    return ImageDataset(name, task, classes, splits["train"], splits["val"], splits["test"], source,
                        skipped=list(bad.values()))
