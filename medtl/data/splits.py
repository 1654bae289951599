"""Seeded, stratified train/val/test splits for sources that do not fix all three splits themselves.

The same labels, given splits, fractions and seed always give the same split (scikit-learn's
``train_test_split`` with ``random_state=seed``); another seed gives another split.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import ConfigError, DataError
from .dataset import SPLITS, ImageDataset, Split

Fractions = tuple[float, float, float]  # train, val, test


def check_fractions(split: Sequence[float]) -> Fractions:
    """``(train, val, test)`` fractions: three non-negative numbers summing to 1, with a positive train share."""
    if len(split) != 3 or any(f < 0 for f in split) or split[0] <= 0 or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(
            f"split fractions must be three numbers (train, val, test) >= 0 with train > 0 that sum to 1, got {split}"
        )
    return float(split[0]), float(split[1]), float(split[2])


def assign_splits(
    labels: np.ndarray, given: Sequence[str] | None, fractions: Fractions, seed: int, where: str
) -> dict[str, np.ndarray]:
    """Sorted item indices per split.

    ``given`` names each item's split where the source fixes it (None: nothing fixed, everything is train).
    Train is required. Missing splits are carved from train, stratified by ``labels``: with neither val nor test,
    test takes ``fractions[2]`` of all items and val ``fractions[1]``; with only one of them missing, it takes
    ``f / (fractions[0] + f)`` of train, where ``f`` is its own fraction.
    """
    names = np.asarray(given if given is not None else ["train"] * len(labels))
    idx = {s: np.flatnonzero(names == s) for s in SPLITS}
    if not len(idx["train"]):
        raise DataError(f"{where}: no training images; the train split is required.")
    f_train, f_val, f_test = fractions
    if not len(idx["val"]) and not len(idx["test"]):
        idx["train"], idx["test"] = _carve(idx["train"], labels, f_test, seed, where)
        idx["train"], idx["val"] = _carve(idx["train"], labels, f_val / (f_train + f_val), seed, where)
    elif not len(idx["val"]):
        idx["train"], idx["val"] = _carve(idx["train"], labels, f_val / (f_train + f_val), seed, where)
    elif not len(idx["test"]):
        idx["train"], idx["test"] = _carve(idx["train"], labels, f_test / (f_train + f_test), seed, where)
    return idx


def _carve(pool: np.ndarray, labels: np.ndarray, fraction: float, seed: int, where: str) -> tuple[np.ndarray, ...]:
    """Split ``fraction`` of ``pool`` off, stratified by label; small pools give at least one image per class."""
    if fraction == 0:
        return pool, pool[:0]
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
    TruncatedTL paper's repeated random splits. Multi-label sets are stratified on having any positive label."""
    images = torch.cat([data.split(s).images for s in SPLITS])
    labels = torch.cat([data.split(s).labels for s in SPLITS])
    strata = labels.numpy() if labels.ndim == 1 else (labels.sum(1) > 0).long().numpy()
    idx = assign_splits(strata, None, check_fractions(fractions), seed, f"{data.name} (resplit {seed})")
    parts = {s: Split(images[torch.from_numpy(i)], labels[torch.from_numpy(i)]) for s, i in idx.items()}
    return ImageDataset(data.name, data.task, data.classes, **parts, source={**data.source, "resplit": seed},
                        skipped=data.skipped)
