"""Data sets from image or volume files: an ImageFolder tree or a CSV manifest, resized to one size at load."""
from __future__ import annotations

import csv
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, MedtlWarning
from .dataset import SPLITS, ImageDataset, Split
from .images import load_images
from .readers import Item, Reading, attribute_groups, collect, file_suffixes, reader_for
from .splits import Fractions, assign_splits, test_only_record
from .text import printable
from .volumes import load_volumes

# Folder names read as splits, in any case: "Training/" and "Testing/" must not become two classes.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


@dataclass
class Labelled:
    """Image files with their labels and where they came from, before any image is read."""

    files: list[Path]
    ids: list[str]  # folders: path relative to the root; CSV: the path as written
    labels: list[str]
    splits: list[str] | None  # None: no split given
    groups: list[str] | None = None
    group_by: str | None = None
    items: list[Item] | None = None  # the readers' items, one per file (set once the files are collected)


def load_folder(root: Path, name: str, image_size: int, fractions: Fractions, seed: int,
                skip_bad: bool = False, classes: Sequence[str] | None = None, all_test: bool = False,
                reading: Reading = Reading(), group_by: str | None = None) -> ImageDataset:
    """An ImageFolder tree: ``root/<split>/<class>/...`` (train required) or ``root/<class>/...``.

    Split folders are recognised by name in any case: ``train``/``training``, ``val``/``valid``/``validation``,
    ``test``/``testing``. Classes are the sorted class folder names (union over split folders), or ``classes``
    when given (see :func:`medtl.data.load_dataset`); files are found recursively, hidden files and folders are
    skipped, and each file goes to the reader of its format (:mod:`medtl.data.readers`). Files no reader takes are
    ignored with a warning that counts them, since a folder of unreadable files silently read as "no images" would
    be a mystery. Broken or looping symbolic links count as unreadable files. Volumes are items too: a NIfTI file,
    or a folder of DICOM files that the DICOM rule reads as one series. ``group_by`` names a file attribute (DICOM:
    ``PatientID``, ``StudyInstanceUID``) whose salted hash groups the items.
    """
    layout = _split_layout(root)
    files: list[Path] = []
    owner: dict[Path, tuple[str, str]] = {}  # file, and the folder holding it -> (class, split)
    class_names: set[str] = set()
    for split, base in layout:
        for class_dir in _visible_dirs(base):
            class_names.add(class_dir.name)
            for f in sorted(class_dir.rglob("*")):
                hidden = any(part.startswith(".") for part in f.relative_to(class_dir).parts)
                broken_link = f.is_symlink() and not f.exists()
                if hidden or not (f.is_file() or broken_link):
                    continue
                files.append(f)
                owner[f] = (class_dir.name, split)
                owner.setdefault(f.parent, (class_dir.name, split))
    found_items, ignored = collect(files, reading)
    items = Labelled([i.path for i in found_items], [printable(i.path.relative_to(root)) for i in found_items],
                     [owner[i.path][0] for i in found_items], None, items=found_items)
    where = printable(root)
    loose = [f for _, base in layout for f in sorted(base.iterdir()) if f.is_file() and not f.name.startswith(".")
             and reader_for(f) is not None]
    if loose:
        outside = (f"{len(loose)} image file(s) (e.g. {printable(loose[0].relative_to(root))}) sit directly in "
                   f"{printable(loose[0].parent)}, outside class folders")
        if len(class_names) < 2:
            raise DataError(f"{where}: {outside}; medtl reads an image's class from the folder holding it. Move them "
                            f"into one folder per class ({where}/<class>/...), or list them with their labels in a "
                            "CSV (columns path,label).")
        warnings.warn(f"{where}: ignored {outside}.", MedtlWarning, stacklevel=3)
    found = set(items.labels)
    empty = [printable(c) for c in sorted(class_names) if c not in found]
    kinds = ", ".join(f"{n} {suffix}" for suffix, n in ignored.most_common())
    if empty:
        raise DataError(
            f"{where}: class folder(s) {', '.join(empty)} contain no image files "
            f"({', '.join(file_suffixes(('image',)))}) or volumes ({', '.join(file_suffixes(('volume',)))}, DICOM "
            f"series){f'; found only unsupported files ({kinds})' if ignored else ''}; add images or remove the "
            "folders."
        )
    if ignored:
        warnings.warn(f"{where}: ignored {sum(ignored.values())} file(s) that are not supported images ({kinds}).",
                      MedtlWarning, stacklevel=3)
    if classes is not None:
        _check_known(where, "class folder(s)", sorted(class_names), classes)
    if len(layout) > 1 or layout[0][1] != root:
        items.splits = [owner[i.path][1] for i in found_items]
    if group_by is not None:
        items.groups, items.group_by = attribute_groups(found_items, group_by), group_by
    source = {"kind": "folder", "path": printable(root.resolve()), "md5": None, "license": None, "citation": None}
    return _from_files(name, source, items, list(classes) if classes is not None else sorted(class_names),
                       classes is not None, image_size, fractions, seed, skip_bad, all_test, reading)


def _split_layout(root: Path) -> list[tuple[str, Path]]:
    """``[(split, folder)]``: the split folders of ``root``, or ``[("train", root)]`` when it has none."""
    subdirs = _visible_dirs(root)
    named = {d: SPLIT_NAMES.get(d.name.lower()) for d in subdirs}
    split_dirs = [d for d in subdirs if named[d]]
    if not split_dirs:
        return [("train", root)]
    where = printable(root)
    others = [printable(d.name) for d in subdirs if not named[d]]
    if others:
        raise DataError(
            f"{where} mixes split folders ({', '.join(printable(d.name) for d in split_dirs)}) with other folders "
            f"({', '.join(others)}), which would become classes next to them, so the layout is neither "
            "<split>/<class>/ nor <class>/. Put the class folders inside the split folders (train/, val/, test/; "
            "also recognised in any case: training, valid, validation, testing), or rename a class folder that only "
            "looks like a split."
        )
    for split, count in Counter(named[d] for d in split_dirs).items():
        if count > 1:
            same = ", ".join(printable(d.name) for d in split_dirs if named[d] == split)
            raise DataError(f"{where}: the folders {same} all name the {split} split; merge them into one.")
    if "train" not in named.values():
        raise DataError(f"{where} has split folders ({', '.join(printable(d.name) for d in split_dirs)}) but no "
                        "train/ (or training/) folder; the train split is required.")
    # split_dirs holds only the folders with a split name; mypy cannot narrow named[d] to str
    return [(named[d], d) for d in split_dirs]  # type: ignore[misc]


def _check_known(where: str, what: str, names: Sequence[str], classes: Sequence[str]) -> None:
    """Refuse class names that are not among ``classes`` (a model's), naming both."""
    unknown = [printable(n) for n in names if n not in set(classes)]
    if unknown:
        raise DataError(f"{where}: {what} {', '.join(repr(u) for u in unknown)} are not among the model's classes "
                        f"{list(classes)}; rename them, or remove the images the model cannot score.")


def load_manifest(path: Path, name: str, image_size: int, fractions: Fractions, seed: int,
                  skip_bad: bool = False, classes: Sequence[str] | None = None, all_test: bool = False,
                  group_by: str | None = None, reading: Reading = Reading()) -> ImageDataset:
    """A CSV manifest with header ``path,label`` and optional ``split`` (train/val/test) and group columns.

    Paths are relative to the CSV's folder (absolute paths are allowed); a path on two lines is refused (a
    duplicate row would put one image in two splits); a path may name a volume (NIfTI file or DICOM series folder).
    ``group_by`` may also name a DICOM attribute (``PatientID``) when no column has that name.
    Labels are class names or integers; classes are the sorted
    unique labels (numerically sorted when all are integers), or ``classes`` when given. The group column (named
    ``group_by``; by default a column named ``group``, if any) holds a patient or study id: splits medtl draws
    keep each group on one side. Errors name the line number in the file (the header is line 1).
    """
    items, lines = _read_manifest(path, group_by)
    _check_duplicates(path, items, lines)
    items.items = _manifest_items(path, items, lines, reading)
    if group_by is not None and items.groups is None:  # no such column: a file attribute
        items.groups, items.group_by = attribute_groups(items.items, group_by), group_by
    items.labels, found = _manifest_classes(path, items.labels, lines)
    if classes is not None:
        _check_known(printable(path), "label(s)", found, classes)
    elif not all_test:
        _check_rare_labels(path, items.labels, items.splits, lines)
    source = {"kind": "csv", "path": printable(path.resolve()), "md5": None, "license": None, "citation": None}
    return _from_files(name, source, items, list(classes) if classes is not None else found, classes is not None,
                       image_size, fractions, seed, skip_bad, all_test, reading)


def _check_duplicates(path: Path, items: Labelled, lines: list[int]) -> None:
    """Refuse a path on several lines: with one label the rows are duplicates (which leak between drawn splits),
    with different labels the data contradicts itself."""
    rows: dict[str, list[int]] = defaultdict(list)
    for i, file in enumerate(items.files):
        rows[os.path.normcase(os.path.abspath(file))].append(i)
    repeated = [r for r in rows.values() if len(r) > 1]
    if not repeated:
        return
    conflicting = [r for r in repeated if len({items.labels[i] for i in r}) > 1]

    def show(r: list[int], labels: bool) -> str:
        where = ", ".join(f"line {lines[i]}" + (f" ({items.labels[i]!r})" if labels else "") for i in r[:5])
        return f"{items.ids[r[0]]!r} on {where}{', ...' if len(r) > 5 else ''}"

    more = lambda found: f" ({len(found) - 3} more paths like these)" if len(found) > 3 else ""  # noqa: E731
    if conflicting:
        raise DataError(f"{printable(path)}: conflicting labels: the same image is listed with different labels: "
                        f"{'; '.join(show(r, True) for r in conflicting[:3])}{more(conflicting)}. Decide on one "
                        "label per image and keep one row for it.")
    raise DataError(f"{printable(path)}: duplicate rows: the same image is listed more than once: "
                    f"{'; '.join(show(r, False) for r in repeated[:3])}{more(repeated)}. Remove the duplicate rows "
                    "(repeated rows would put one image in both train and test).")


def _manifest_items(path: Path, items: Labelled, lines: list[int], reading: Reading) -> list[Item]:
    """Each row's reader item; files no reader takes stay items, to be reported as unreadable when read."""
    found, _ = collect(items.files, reading, keep_unknown=True)
    if [i.path for i in found] != items.files:
        rows = {f: line for f, line in zip(items.files, lines)}
        merged = [i.path for i in found if i.path not in rows]
        lines_of = [str(rows[f]) for f in items.files if merged and f.parent == merged[0]][:5]
        raise DataError(f"{printable(path)}, lines {', '.join(lines_of)}: these rows are slices of one DICOM series "
                        f"(folder {printable(merged[0]) if merged else '?'}); list the series folder on one row to "
                        "read it as a volume, or pass --dicom 2d to read each file as an image.")
    return found


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
            f"{printable(path)}: the labels mix numbers and names (line {lines[i]}: {labels[i]!r}, line {lines[j]}: "
            f"{labels[j]!r}); use class names throughout or class indices throughout."
        )
    # below, no n is None: a mix of numbers and names was refused above (mypy cannot follow that any/all)
    for label, n, line in zip(labels, numbers, lines):
        if not n.is_integer():  # type: ignore[union-attr]
            raise DataError(f"{printable(path)}, line {line}: label {label!r} is not a whole number; numeric labels "
                            "are class indices (0, 1, ...), not scores.")
    indices = [int(n) for n in numbers]  # type: ignore[arg-type]
    return [str(i) for i in indices], [str(i) for i in sorted(set(indices))]


def _check_rare_labels(path: Path, labels: list[str], splits: list[str] | None, lines: list[int]) -> None:
    """Refuse a label the model could never learn or that cannot be split: usually a typo ("bengin")."""
    if splits is not None:
        trained = {label for label, split in zip(labels, splits) if split == "train"}
        for label, line in zip(labels, lines):
            if label not in trained:
                raise DataError(f"{printable(path)}, line {line}: label {label!r} appears in no train row, so no "
                                "model can learn it (a typo?); fix the label or add training rows of that class.")
        return
    counts = Counter(labels)
    for label, line in zip(labels, lines):
        if counts[label] == 1:
            raise DataError(f"{printable(path)}, line {line}: label {label!r} occurs on this line only (a typo?); "
                            "a class needs at least 2 images to be split into train/val/test. Fix the label or add "
                            "images.")


def _read_manifest(path: Path, group_by: str | None) -> tuple[Labelled, list[int]]:
    """The rows of a manifest and their line numbers; ``group_by`` names the group column (None: ``group`` if any)."""
    files: list[Path] = []
    ids: list[str] = []
    labels: list[str] = []
    splits: list[str] = []
    groups: list[str] = []
    lines: list[int] = []
    where_file = printable(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = {c.strip().lower(): c for c in reader.fieldnames or [] if c}
            if "path" not in columns or "label" not in columns:
                raise DataError(
                    f"{where_file}: the header (line 1) must name the columns 'path' and 'label' (and optionally "
                    f"'split' and 'group'), found {reader.fieldnames}."
                )
            group_column = _group_column(where_file, columns, group_by)
            if group_by is not None and group_column is None:
                group_by = None  # not a column: a file attribute, read by load_manifest
            for row in reader:
                where = f"{where_file}, line {reader.line_num}"
                value = {key: (row.get(col) or "").strip() for key, col in columns.items()}
                if not value["path"]:
                    raise DataError(f"{where}: the path is empty; give an image path or remove the row.")
                file = Path(value["path"]).expanduser()
                file = file if file.is_absolute() else path.parent / file
                if not (file.is_file() or file.is_dir()):
                    raise DataError(
                        f"{where}: image {value['path']!r} not found (looked for {printable(file)}); fix the path "
                        "(relative paths are resolved against the CSV's folder) or remove the row."
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
                if group_column and not value[group_column]:
                    raise DataError(f"{where}: the {group_column!r} column is empty; give every row its group "
                                    "(e.g. the patient id), or remove the column.")
                files.append(file)
                ids.append(value["path"])
                labels.append(value["label"])
                splits.append(value.get("split", "train").lower())
                groups.append(value.get(group_column or "", ""))
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{where_file}: cannot parse as a UTF-8 CSV file ({e}).") from e
    if not files:
        raise DataError(f"{where_file}: the manifest has no data rows.")
    items = Labelled(files, ids, labels, splits if "split" in columns else None,
                     groups if group_column else None, group_column)
    return items, lines


def _group_column(where: str, columns: dict[str, str], group_by: str | None) -> str | None:
    """The (lower-case) group column: ``group_by``, which must exist, else ``group`` if the header has it."""
    if group_by is None:
        return "group" if "group" in columns else None
    key = group_by.strip().lower()
    if key not in columns and key not in ("path", "label", "split") and group_by.strip()[:1].isupper():
        return None  # a DICOM attribute keyword such as PatientID: read from the files
    if key in ("path", "label", "split") or key not in columns:
        raise DataError(f"{where}: no column {group_by!r} to group by (columns: {', '.join(columns.values())}); "
                        "name the column that holds the patient or study id.")
    return key


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
    items: Labelled,
    classes: list[str],
    fixed_classes: bool,
    image_size: int,
    fractions: Fractions,
    seed: int,
    skip_bad: bool,
    all_test: bool,
    reading: Reading,
) -> ImageDataset:
    """Load every file once (leaving out unreadable ones if ``skip_bad``), split the items, build the data set."""
    if len(classes) < 2 and not fixed_classes:
        raise DataError(f"{source['path']}: found only the class(es) {classes}; classification needs at least two.")
    kinds = [item.reader.kind for item in items.items or []]
    volumes = [k == "volume" for k in kinds]
    if any(volumes) and not all(volumes):
        image, volume = items.ids[volumes.index(False)], items.ids[volumes.index(True)]
        raise DataError(f"{source['path']} mixes 2D images ({image!r}) with volumes ({volume!r}); a data set holds one "
                        "kind: move them apart.")
    load = (lambda *a: load_volumes(*a, reading)) if all(volumes) else (lambda *a: load_images(*a, reading))
    images, bad, formats = load(items.files, image_size, skip_bad)
    kept = [i for i in range(len(items.files)) if i not in bad]

    def keep(values: list[str] | None) -> list[str] | None:
        return None if values is None else [values[i] for i in kept]

    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[items.labels[i]] for i in kept], dtype=np.int64)
    every = Split(images, torch.from_numpy(labels), keep(items.ids), keep(items.groups), formats)
    if all_test:
        parts = {"train": np.arange(0), "val": np.arange(0), "test": np.arange(len(kept))}
        record = test_only_record(len(kept))
    else:
        parts, record = assign_splits(labels, keep(items.splits), fractions, seed, str(source["path"]),
                                      keep(items.groups), items.group_by)
    splits = {s: every.take(i) for s, i in parts.items()}
    source.update(image_size=image_size, seed=seed, skipped_files=len(bad), group_by=items.group_by,
                  readers=sorted({item.reader.name for item in items.items or []}), **record)
    task = "binary" if len(classes) == 2 else "multiclass"
    return ImageDataset(name, task, classes, splits["train"], splits["val"], splits["test"], source,
                        skipped=list(bad.values()))
