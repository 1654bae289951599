"""Training: the loop (train_one_epoch, evaluate, Trainer), seeding, and the frozen-prefix feature cache."""
from . import distributed
from .loop import FitResult, Paused, Trainer, evaluate, train_one_epoch
from .seed import seed_everything

__all__ = ["FitResult", "distributed", "Paused", "Trainer", "evaluate", "seed_everything", "train_one_epoch"]
