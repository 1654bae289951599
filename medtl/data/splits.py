"""Seeded, stratified train/val/test splits for sources that do not fix all three splits themselves.

The same labels, given splits, fractions and seed always give the same split (scikit-learn's
``train_test_split`` with ``random_state=seed``); another seed gives another split.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from ..errors import ConfigError, DataError
from .dataset import SPLITS, ImageDataset, Split

Fractions = tuple[float, float, float]  # train, val, test
# The split record (see assign_splits) of a source that gives all three splits.
GIVEN: dict[str, Any] = {"splits": {s: "given" for s in SPLITS}, "split": None,
                         "split_note": "training, validation, test given."}


def check_fractions(split: Sequence[float]) -> Fractions:
    """``(train, val, test)`` fractions: three non-negative numbers summing to 1, with a positive train share."""
    if len(split) != 3 or any(f < 0 for f in split) or split[0] <= 0 or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(
            f"split fractions must be three numbers (train, val, test) >= 0 with train > 0 that sum to 1, got {split}"
        )
    return float(split[0]), float(split[1]), float(split[2])


def assign_splits(
    labels: np.ndarray, given: Sequence[str] | None, fractions: Fractions, seed: int, where: str,
    groups: Sequence[str] | None = None, group_by: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Sorted item indices per split, and the record of how each split came about.

    ``given`` names each item's split where the source fixes it (None: nothing fixed, everything is train).
    Train is required. Missing splits are carved from train, stratified by ``labels``: with neither val nor test,
    test takes ``fractions[2]`` of all items and val ``fractions[1]``; with only one of them missing, it takes
    ``f / (fractions[0] + f)`` of train, where ``f`` is its own fraction. With ``groups`` (one patient/study id per
    item, from the column ``group_by``) every group lands on one side of each cut (scikit-learn's
    ``StratifiedGroupKFold``; the fractions are then approximate).

    The record (merged into ``ImageDataset.source``) has ``splits`` ({split: "given" | "drawn from ..."}),
    ``split`` (the fractions, or None when all three splits were given) and ``split_note`` (a sentence).
    """
    names = np.asarray(given if given is not None else ["train"] * len(labels))
    idx = {s: np.flatnonzero(names == s) for s in SPLITS}
    if not len(idx["train"]):
        raise DataError(f"{where}: no training images; the train split is required.")
    group_array = None if groups is None else np.asarray(groups)
    f_train, f_val, f_test = fractions
    drawn: dict[str, float] = {}  # split -> fraction of the pool it was drawn from
    if not len(idx["val"]) and not len(idx["test"]):
        drawn["test"], drawn["val"] = f_test, f_val / (f_train + f_val)
    elif not len(idx["val"]):
        drawn["val"] = f_val / (f_train + f_val)
    elif not len(idx["test"]):
        drawn["test"] = f_test / (f_train + f_test)
    for name, fraction in drawn.items():
        idx["train"], idx[name] = _carve(idx["train"], labels, fraction, seed, where, group_array)
    return idx, split_record({s: len(idx[s]) for s in SPLITS}, drawn, fractions, seed, "train", group_by)


def split_record(counts: dict[str, int], drawn: dict[str, float], fractions: Fractions, seed: int, pool: str,
                 group_by: str | None) -> dict[str, Any]:
    """``source`` entries saying which splits were given and how the others were drawn (see :func:`assign_splits`)."""
    grouping = f"grouped by {group_by!r}" if group_by else "not grouped by patient"
    splits = {s: f"drawn from {pool} ({100 * drawn[s]:.1f}%, stratified, seed {seed}, {grouping})" if s in drawn
              else "given" for s in SPLITS}
    label = {"train": "training", "val": "validation", "test": "test"}
    given = [s for s in SPLITS if s not in drawn]
    parts = [f"{', '.join(label[s] for s in given)} given"] if given else []
    parts += [f"{label[s]}: {counts[s]} images drawn stratified from {pool}, seed {seed}; {grouping}" for s in drawn]
    return {"splits": splits, "split": list(fractions) if drawn else None, "split_note": "; ".join(parts) + "."}


def _carve(pool: np.ndarray, labels: np.ndarray, fraction: float, seed: int, where: str,
           groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split ``fraction`` of ``pool`` off, stratified by label; small pools give at least one image per class.

    With ``groups``, the part split off is one fold of ``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds,
    so that no group is on both sides.
    """
    if fraction == 0:
        return pool, pool[:0]
    if groups is not None:
        folds = max(2, round(1 / fraction))
        if len(np.unique(groups[pool])) < folds:
            raise DataError(f"{where}: {len(np.unique(groups[pool]))} groups cannot be split {fraction:.0%} / "
                            f"{1 - fraction:.0%} with whole groups on each side; add groups or give the splits.")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        keep, out = next(splitter.split(pool, labels[pool], groups[pool]))
        return np.sort(pool[keep]), np.sort(pool[out])
    # Ceil as scikit-learn does, without float noise (48 * 0.1 / 0.8), and at least one image per class.
    count = max(math.ceil(fraction * len(pool) - 1e-9), len(np.unique(labels[pool])))
    try:
        keep, out = train_test_split(pool, test_size=count, stratify=labels[pool], random_state=seed)
    except ValueError as e:
        raise DataError(
            f"{where}: cannot make a stratified split of {len(pool)} images ({e}). Add images to the smallest "
            "classes, change the split fractions, or give the splits explicitly (split folders or a split column)."
        ) from e
    return np.sort(keep), np.sort(out)


def resplit(data: ImageDataset, fractions: Fractions, seed: int) -> ImageDataset:
    """``data`` with train, val and test pooled and drawn again, stratified, with ``fractions`` and ``seed``: the
    TruncatedTL paper's repeated random splits. Multi-label sets are stratified on having any positive label.
    Image ids (and groups: drawn splits stay group-disjoint) go with their images."""
    pooled = Split.concat([data.split(s) for s in SPLITS])
    labels = pooled.labels
    strata = labels.numpy() if labels.ndim == 1 else (labels.sum(1) > 0).long().numpy()
    fractions = check_fractions(fractions)
    where = f"{data.name} (resplit {seed})"
    group_array = None if pooled.groups is None else np.asarray(pooled.groups)
    idx = {"train": np.arange(len(pooled))}
    idx["train"], idx["test"] = _carve(idx["train"], strata, fractions[2], seed, where, group_array)
    idx["train"], idx["val"] = _carve(idx["train"], strata, fractions[1] / (fractions[0] + fractions[1]), seed, where,
                                      group_array)
    drawn = {"test": fractions[2], "val": fractions[1] / (fractions[0] + fractions[1]),
             "train": fractions[0] / (fractions[0] + fractions[1])}
    record = split_record({s: len(idx[s]) for s in SPLITS}, drawn, fractions, seed, "train+val+test pooled",
                          data.source.get("group_by"))
    parts = {s: pooled.take(i) for s, i in idx.items()}
    return ImageDataset(data.name, data.task, data.classes, **parts,
                        source={**data.source, **record, "resplit": seed}, skipped=data.skipped)


def as_test_only(data: ImageDataset) -> ImageDataset:
    """``data`` with every image in the test split (train and val empty): for scoring an external data set."""
    pooled = Split.concat([data.split(s) for s in SPLITS])
    empty = pooled.take([])
    return ImageDataset(data.name, data.task, data.classes, empty, empty, pooled,
                        {**data.source, **test_only_record(len(pooled))}, data.skipped)


def test_only_record(count: int) -> dict[str, Any]:
    """The split record (see :func:`assign_splits`) of a data set whose every image is in the test split."""
    return {"splits": {"train": "empty", "val": "empty", "test": "every image"}, "split": None,
            "split_note": f"all {count} images form the test split (external evaluation)."}
