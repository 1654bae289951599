"""How long to train: a recipe that scales with the data, fitted into a time budget when one is given.

The defaults were 30 epochs, patience 10 and one warm-up epoch, tuned on BreastMNIST's 546 training images (270
optimizer steps). On 50,000 images the same numbers mean 23,000 steps, a third of them spent waiting for patience,
and a user cannot tell beforehand whether that is 10 minutes or 10 hours. So the training length is stated as
images seen: about :data:`IMAGES_SEEN` (1,000 steps at batch 64), at least :data:`MIN_EPOCHS` epochs (model
selection needs several validation points) and at most :data:`MAX_EPOCHS` (small sets converge well before);
patience and warm-up are fractions of that length. BreastMNIST keeps exactly its old schedule (30 / 10 / 1).

With ``--time-limit`` the epochs that fit are chosen from the measured cost of a few real training steps and of one
validation pass (:mod:`medtl.training.budget`), and the schedule (warm-up, cosine) is laid over those epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import TrainConfig, parse_duration

IMAGES_SEEN = 64_000
MIN_EPOCHS = 5
MAX_EPOCHS = 30
GROWTH = (0.5, 0.8)  # progressive resizing: start size until half the epochs, linear growth, final size from 80%
SIZE_STEP = 16  # intermediate progressive sizes are multiples of this

def default_epochs(n_train: int) -> int:
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(IMAGES_SEEN / max(1, n_train))))


def default_patience(epochs: int) -> int:
    return max(3, math.ceil(epochs / 3))


def default_warmup(epochs: int) -> float:
    """One epoch, or 5% of the training when that is shorter (a 5-epoch run on 50,000 images warms up for 0.25)."""
    return min(1.0, 0.05 * epochs)


def size_at(epoch: int, epochs: int, start: int | None, final: int) -> int:
    """Training image size of ``epoch`` (1-based) under progressive resizing: ``start`` for the first half of the
    epochs, growing linearly to ``final`` by 80% of them (multiples of 16), ``final`` for the rest."""
    if not start or start >= final:
        return final
    a, b = GROWTH[0] * epochs, GROWTH[1] * epochs
    t = min(1.0, max(0.0, (epoch - a) / max(b - a, 1e-9)))
    size = start + t * (final - start)
    return final if t >= 1 else int(round(size / SIZE_STEP) * SIZE_STEP) or start


@dataclass(frozen=True)
class EpochCost:
    """Measured seconds of one training epoch at the final size (and at the start size, when resizing) and of one
    validation pass."""

    train_s: float
    val_s: float
    start_train_s: float | None = None

    def epoch_s(self, size: int, final: int, start: int | None) -> float:
        if start and self.start_train_s is not None and size != final:
            # cost grows with the pixel count: interpolate between the two measured sizes in pixels
            frac = (size ** 2 - start ** 2) / max(final ** 2 - start ** 2, 1)
            return self.start_train_s + frac * (self.train_s - self.start_train_s) + self.val_s
        return self.train_s + self.val_s

    def run_s(self, epochs: int, cfg: TrainConfig) -> float:
        if not cfg.start_size or cfg.start_size >= cfg.image_size:
            return epochs * (self.train_s + self.val_s)
        return sum(self.epoch_s(size_at(e, epochs, cfg.start_size, cfg.image_size), cfg.image_size, cfg.start_size)
                   for e in range(1, epochs + 1))

    def epochs_within(self, budget_s: float, most: int, cfg: TrainConfig) -> int:
        """The most epochs (at least 1, at most ``most``) whose run fits in ``budget_s``: a bisection, since the run
        time grows with the epochs (``--epochs 100000 --time-limit 1h`` must not add up 10^10 epoch costs)."""
        low, high = 1, most
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if self.run_s(mid, cfg) <= budget_s else (low, mid - 1)
        return low


@dataclass(frozen=True)
class Recipe:
    """The resolved schedule and how it was chosen (printed before training, saved in metrics.json)."""

    cfg: TrainConfig
    note: str
    estimate_s: float | None


def resolve(cfg: TrainConfig, n_train: int, cost: EpochCost | None = None) -> Recipe:
    """Fill in the epochs, patience and warm-up the config leaves to the recipe, capped by the time budget."""
    epochs = cfg.epochs if cfg.epochs is not None else default_epochs(n_train)
    why = "given" if cfg.epochs is not None else (f"about {IMAGES_SEEN:,} images seen over {n_train:,} training "
                                                   f"images, {MIN_EPOCHS}-{MAX_EPOCHS}")
    estimate = cost.run_s(epochs, cfg) if cost is not None else None
    if cfg.time_limit is not None and cost is not None:
        budget = parse_duration(cfg.time_limit)
        fit = cost.epochs_within(budget, epochs, cfg)
        if fit < epochs:
            why = f"{epochs} would take ~{_clock(estimate)}, over the {_clock(budget)} time limit"
            epochs, estimate = fit, cost.run_s(fit, cfg)
        else:
            why += f"; within the {_clock(budget)} time limit"
    patience = cfg.patience if cfg.patience is not None else default_patience(epochs)
    warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else default_warmup(epochs)
    resolved = replace(cfg, epochs=epochs, patience=patience, warmup_epochs=warmup)

    def grown(epoch: int) -> bool:
        return size_at(epoch, epochs, cfg.start_size, cfg.image_size) > cfg.start_size

    sizes = (f", {cfg.start_size} px growing to {cfg.image_size} px from epoch "
             f"{next(filter(grown, range(1, epochs + 1)))}"
             if cfg.start_size and cfg.start_size < cfg.image_size and epochs > 1 else "")
    note = (f"schedule: {epochs} epochs ({why}), patience {patience}, warm-up {warmup:g} epoch(s){sizes}"
            + (f"; estimated {_clock(estimate)} of training and validation"
               f" ({cost.train_s + cost.val_s:.1f} s per epoch at {cfg.image_size} px)"
               if estimate is not None else ""))
    return Recipe(resolved, note, estimate)


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
