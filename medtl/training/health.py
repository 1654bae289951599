"""Training health: a non-finite loss stops the run with the last good checkpoint kept (continuing would only
write NaN weights), and a validation AUROC stuck at chance gets a warning, because that nearly always means
wrong labels or a wrong intensity scale rather than a hard task."""
from __future__ import annotations

import warnings

import torch

from ..errors import MedtlWarning, TrainingError

CHANCE_MARGIN = 0.05  # |AUROC - 0.5| below this is chance level
CHANCE_EPOCHS = 5  # epochs after which a run still at chance is worth a warning


def check_finite(value: torch.Tensor, what: str, epoch: int, lr: float) -> None:
    """Raise TrainingError if ``value`` holds NaN or inf; the last checkpoint on disk stays as it was."""
    if torch.isfinite(value).all():
        return
    raise TrainingError(
        f"{what} became NaN or infinite in epoch {epoch}, so training stopped; the last checkpoint written (if any) "
        f"is kept. Start again with a lower --lr (it was {lr:g}), and check that no image holds NaN or infinite "
        "values."
    )


def warn_if_at_chance(history: list[dict], when: str) -> None:
    """Warn when every validation AUROC in ``history`` is at chance level; ``when`` says which epochs these are."""
    if history and all(abs(row["val_auroc"] - 0.5) < CHANCE_MARGIN for row in history):
        aurocs = ", ".join(f"{row['val_auroc']:.3f}" for row in history[-5:])
        warnings.warn(
            f"validation AUROC is at chance level (within {CHANCE_MARGIN} of 0.5) {when} ({aurocs}): wrong labels or "
            "normalisation? Check that labels match the images (a shifted CSV column, a misnamed class folder) and "
            "that the images are not blank or nearly black after loading (e.g. 12-bit data saved as 16-bit).",
            MedtlWarning, stacklevel=3)
