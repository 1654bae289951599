"""The tracking of one training run: what ``experiment`` opens around the epochs (rank 0 only under torchrun)."""
from __future__ import annotations

from pathlib import Path

from ..deploy.card import MODEL_CARD
from ..rundir import RunDir
from ..training import distributed
from . import Tracking

REPORT = "report.html"


def open_tracking(cfg, run: RunDir, state=None) -> Tracking:
    """The trackers of ``cfg.track`` for ``run``; ``state`` is the checkpoint a resumed run continues from."""
    if not cfg.track or distributed.rank() != 0:
        return Tracking({}, run.path)
    restored = state[0].epoch if state is not None else 0
    return Tracking.open(cfg, run.path, parent=cfg.track_parent, restored_through=restored)


def run_artifacts(run: RunDir) -> list[Path]:
    """The files of a finished run a tracker keeps: the model card, metrics.json (and report.html when a resumed,
    finished run already has one; otherwise it is attached when written)."""
    return [run / MODEL_CARD, run / RunDir.METRICS, run / REPORT]
