"""Class imbalance: a warning before training when a class (multi-label: a label's positives) is rare in the training
split, saying what ``--class-weights`` would change. A rare class is easy to get wrong unnoticed: accuracy and the
arg-max favour the common classes, while AUROC, which ignores the decision, can stay high."""
from __future__ import annotations

import warnings

from ..errors import MedtlWarning
from .dataset import ImageDataset

RARE = 0.05  # a class under this fraction of the training images gets a warning


def rare_classes(data: ImageDataset, rare: float = RARE) -> list[tuple[str, int]]:
    """``(class, training images)`` of every class (multi-label: label positives) under ``rare`` of the images."""
    total = len(data.train)
    return [(c, n) for c, n in zip(data.classes, data.class_counts("train")) if n < rare * total]


def warn_imbalance(data: ImageDataset, class_weights: bool, rare: float = RARE) -> None:
    """Warn about rare classes unless ``--class-weights`` is already on."""
    found = rare_classes(data, rare)
    if not found or class_weights:
        return
    total = len(data.train)
    listed = ", ".join(f"{c!r} {n:,} of {total:,} ({n / total:.1%})" for c, n in found)
    what = "labels with few positives" if data.task == "multilabel" else "rare classes"
    warnings.warn(
        f"{data.name}: {what} in the training split, under {rare:.0%} of its images: {listed}. "
        "The arg-max rarely predicts a class this rare, so "
        "accuracy can look fine while its recall is poor (look at balanced accuracy and the per-class table). "
        "--class-weights weights each image's loss by the inverse frequency of its class (multi-label: positives by "
        "negatives/positives), so every class counts equally in the loss: it usually raises balanced accuracy and the "
        "rare classes' recall, and may cost some AUROC or calibration; compare both on validation.",
        MedtlWarning, stacklevel=2)
