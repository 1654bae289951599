"""Training: the loop, seeding and checkpoints."""
from .loop import CHECKPOINT, FitResult, Trainer, load_checkpoint, predict
from .seed import seed_everything

__all__ = ["CHECKPOINT", "FitResult", "Trainer", "load_checkpoint", "predict", "seed_everything"]
