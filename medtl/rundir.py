"""The run directory: one type that owns its layout (file names), its lock, and the atomic save and load of each
artefact, so that no other module spells a file name or unpacks a checkpoint by string keys; :class:`GridDir` and
:class:`SearchDir` name the files of ``medtl compare`` and ``medtl search`` outputs.

::

    config.yaml  history.csv  metrics.json  predictions_test.csv  predictions_val.csv  model.safetensors  model.json
    checkpoint.pt  best-e<N>.safetensors  skipped_files.txt  autocut.json  latency.json  weights_source.json  .lock
    MODEL_CARD.md  report.html
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

import torch

from .artifacts import (
    MODEL_SPEC,
    MODEL_WEIGHTS,
    atomic_write,
    load_model,
    remove_partial_writes,
    save_model,
    write_csv,
    write_json,
)
from .files import make_dir  # noqa: F401 -- also imported from here
from .config import TrainConfig
from .errors import ConfigError
from .formats import format_version, versioned


@dataclass
class Checkpoint:
    """The training state after an epoch: enough to continue exactly as if the run had never stopped.

    The best weights so far live beside it in ``best-e<best_epoch>.safetensors``, written only when they change: the
    new best file first, then this checkpoint naming it, then the old best file goes, so a crash between any two
    steps leaves a checkpoint whose best file exists. ``config`` and ``data`` fingerprint what was trained, so a
    resume on an edited config or on other data is refused."""

    epoch: int
    model: dict
    optimizer: dict
    schedule: dict
    scaler: dict
    generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[dict]
    best_epoch: int
    best_key: list[float] | None
    bad_epochs: int
    done: bool
    config: dict
    data: dict


def data_fingerprint(data) -> dict[str, str]:
    """Per split, a digest of the images and labels (blake2b, about a gigabyte a second): the identity of what a
    run was trained and tested on, checked by ``--resume`` and by ``medtl evaluate RUN``."""
    out = {}
    for name in ("train", "val", "test"):
        split = data.split(name)
        digest = hashlib.blake2b(digest_size=16)
        for t in (split.images, split.labels):
            digest.update(str((t.dtype, tuple(t.shape))).encode())
            digest.update(t.contiguous().numpy().tobytes())
        out[name] = digest.hexdigest()
    return out


class RunDir:
    """A run directory; ``RunDir.create(out, name)`` makes a new one, ``RunDir(path)`` opens one."""

    CONFIG = "config.yaml"
    HISTORY = "history.csv"
    METRICS = "metrics.json"
    MODEL = MODEL_SPEC
    WEIGHTS = MODEL_WEIGHTS
    PREDICTIONS = "predictions_test.csv"
    MODEL_CARD = "MODEL_CARD.md"
    REPORT = "report.html"
    CHECKPOINT = "checkpoint.pt"
    SKIPPED = "skipped_files.txt"
    AUTOCUT = "autocut.json"
    LATENCY = "latency.json"
    SOURCE = "weights_source.json"
    LOCK = ".lock"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __eq__(self, other) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, out: str | Path, name: str) -> RunDir:
        """A fresh directory ``out/<timestamp>-<name>``; never reuses one (safe with concurrent runs)."""
        out = make_dir(out)
        stem = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
        for i in range(1000):
            path = out / (stem if i == 0 else f"{stem}-{i}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
            except OSError as e:
                raise ConfigError(f"cannot create the run directory {path}: {e.strerror}; choose another --out.") from e
        raise ConfigError(f"could not create a new run directory under {out}.")

    @classmethod
    def at(cls, path: str | Path) -> RunDir:
        """The run directory ``path`` (a grid's runs have fixed names), created if missing."""
        make_dir(path)
        return cls(path)

    # ---- state ---------------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    @property
    def finished(self) -> bool:
        return (self.path / self.METRICS).is_file()

    @property
    def resumable(self) -> bool:
        return (self.path / self.CHECKPOINT).is_file()

    @contextmanager
    def lock(self):
        """Hold an exclusive lock while one process trains here, so that a second ``--resume`` of the same run, or
        a second grid over the same directory, fails at once instead of two processes writing one checkpoint.

        The lock is the operating system's (``flock``): released when the process ends, however it ends. The lock
        file is removed on release; a process that opened it just before must then find that the path no longer
        names the file it locked, and tries again on the new file."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one process per run is then the user's to keep
            yield
            return
        path = self.path / self.LOCK
        for _ in range(100):
            handle = open(path, "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise ConfigError(f"{self.path} is being trained by another process right now; wait for it to finish "
                                  "(or stop it) before training or resuming this run.") from None
            try:
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()  # locked a file its holder had already removed: lock the new one
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            handle.close()

    # ---- artefacts -----------------------------------------------------------------------------------------------
    def save_config(self, cfg: TrainConfig) -> None:
        atomic_write(self.path / self.CONFIG, cfg.to_yaml())

    def load_config(self) -> TrainConfig:
        if not self.started:
            raise ConfigError(f"{self.path} is not a medtl run directory (no {self.CONFIG}).")
        return TrainConfig.load(self.path / self.CONFIG)

    def write_json(self, name: str, obj) -> Path:
        write_json(self.path / name, obj)
        return self.path / name

    def read_json(self, name: str) -> dict:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing; is {self.path} a finished medtl run?") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is damaged ({e}); the run directory cannot be used.") from e

    def metrics(self) -> dict:
        """``metrics.json``, checked to be a format this medtl reads (a run without ``format_version`` is version 1)."""
        metrics = self.read_json(self.METRICS)
        if not isinstance(metrics, dict):
            raise ConfigError(f"{self.path / self.METRICS} must hold a JSON object.")
        format_version(metrics, str(self.path / self.METRICS))
        return metrics

    def write_metrics(self, metrics: dict) -> None:
        self.write_json(self.METRICS, versioned(metrics))

    def write_history(self, rows: list[dict]) -> None:
        write_csv(self.path / self.HISTORY, rows)

    def append_history(self, row: dict) -> None:
        """Add one epoch's row (the header with the first), so a running job's progress can be read (and plotted)
        before it ends. Not atomic row by row; a resumed run rewrites the file from its checkpoint."""
        path = self.path / self.HISTORY
        new = row["epoch"] == 1 or not path.is_file()
        with open(path, "w" if new else "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row), lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow(row)

    @staticmethod
    def predictions(split: str = "test") -> str:
        """The file name of a split's predictions (:data:`PREDICTIONS` for the test split)."""
        return f"predictions_{split}.csv"

    def write_predictions(self, rows: list[dict], split: str = "test") -> None:
        write_csv(self.path / self.predictions(split), rows)

    def write_text(self, name: str, text: str) -> Path:
        atomic_write(self.path / name, text)
        return self.path / name

    def write_skipped(self, lines: list[str]) -> Path:
        path = self.path / self.SKIPPED
        atomic_write(path, "".join(f"{line}\n" for line in lines))
        return path

    def save_model(self, model) -> None:
        save_model(model, self.path)

    def load_model(self):
        return load_model(self.path)

    # ---- checkpoint ----------------------------------------------------------------------------------------------
    def best_path(self, epoch: int) -> Path:
        return self.path / f"best-e{epoch}.safetensors"

    def save_checkpoint(self, state: Checkpoint, best_state: dict | None) -> None:
        """Commit ``state``; ``best_state`` (the weights of ``state.best_epoch``) is written first when given, i.e.
        when the best epoch changed since the last commit."""
        from safetensors.torch import save

        if best_state is not None:
            atomic_write(self.best_path(state.best_epoch), save(best_state))
        buffer = io.BytesIO()
        torch.save(asdict(state), buffer)
        atomic_write(self.path / self.CHECKPOINT, buffer.getvalue())
        for old in self.path.glob("best-e*.safetensors"):
            if old != self.best_path(state.best_epoch):
                old.unlink(missing_ok=True)

    def load_checkpoint(self) -> tuple[Checkpoint, dict]:
        """The last checkpoint and its best weights (tensors and plain values only: ``weights_only=True``)."""
        from safetensors.torch import load_file

        path = self.path / self.CHECKPOINT
        restart = f"start the run again: medtl train --config {self.path / self.CONFIG} --out NEW_DIR"
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- a refused pickle and a damaged file mean the same: it cannot be used
            raise ConfigError(f"{path} cannot be resumed from: it is damaged or holds Python objects, which medtl "
                              f"never unpickles ({type(e).__name__}); {restart}") from e
        names = {f.name for f in fields(Checkpoint)}
        if not isinstance(raw, dict) or set(raw) != names:
            raise ConfigError(f"{path} was written by another version of medtl and cannot be resumed; {restart}")
        state = Checkpoint(**raw)
        try:
            best = load_file(str(self.best_path(state.best_epoch)))
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"{self.best_path(state.best_epoch)} (the best weights {path} names) is missing or "
                              f"damaged ({type(e).__name__}); {restart}") from e
        return state, best

    def remove_partial_writes(self) -> None:
        remove_partial_writes(self.path)


class GridDir:
    """The file names of a ``medtl compare`` output: the grid's tables, its runs under ``runs/``, its report."""

    RUNS = "runs.csv"
    CONFIGURATIONS = "configurations.csv"
    TABLE = "table.csv"
    TABLE_MD = "table.md"
    CONFIGURATIONS_MD = "configurations.md"
    RUN_DIRS = "runs"  # one RunDir per grid run
    REPORT = RunDir.REPORT
    FILES = (RUNS, TABLE, CONFIGURATIONS)  # present when the grid is finished

    @classmethod
    def finished(cls, path: Path) -> bool:
        return all((Path(path) / name).is_file() for name in cls.FILES)


class SearchDir:
    """The file names of a ``medtl search`` output (its grids sit in subfolders, each a :class:`GridDir`)."""

    CSV = "search.csv"
    JSON = "search.json"
    REPORT = RunDir.REPORT
    FILES = (CSV, JSON)

    @classmethod
    def finished(cls, path: Path) -> bool:
        return all((Path(path) / name).is_file() for name in cls.FILES)

