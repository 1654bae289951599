"""TensorBoard: the run's scalars in ``RUN/tb`` (``tensorboard --logdir OUT`` shows every run), written with
tensorboardX, which needs neither TensorFlow nor the tensorboard server. Names are those of history.csv and
metrics.json; the step is the epoch (final metrics at the selected epoch). A resumed run appends to the same
directory and purges the epochs it trains again."""
from __future__ import annotations

import time
from pathlib import Path

from ..optional import require
from . import final_metrics

SummaryWriter = require("tensorboardX", extra="track", purpose="--track tensorboard").SummaryWriter

LOGDIR = "tb"


class TensorBoardTracker:
    nests = False

    def __init__(self) -> None:
        self.writer: SummaryWriter | None = None

    def open(self, directory: Path, cfg, record: dict | None, parent: str | None, name: str, tags: dict[str, str],
             store: Path, restored_through: int) -> dict:
        purge = restored_through + 1 if record and restored_through else None  # drop the epochs trained again
        # tensorboardX names the event file by the second and opens it for writing: a resume within the same second
        # would overwrite the first file. Nanoseconds keep the names unique and in the order they were written.
        self.writer = SummaryWriter(logdir=str(directory / LOGDIR), purge_step=purge,
                                    filename_suffix=f".{time.time_ns():020d}")
        return {"logdir": LOGDIR}

    def log_epoch(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, global_step=int(row["epoch"]))
        self.writer.flush()

    def log_final(self, metrics: dict, artifacts: list[Path]) -> None:
        step = int(metrics.get("best_epoch") or 0)
        for key, value in final_metrics(metrics).items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def attach(self, record: dict, artifacts: list[Path]) -> None:
        """Files are not TensorBoard's business: they stay in the run directory."""

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
