"""Experiment tracking: an observer of a training run (``--track mlflow``, ``--track tensorboard``) that hands the run's
config, per-epoch rows, final metrics and artefacts to one or more trackers, and of a grid (``compare``, ``search``),
whose runs nest under one parent run.

The run directory stays the source of truth: a tracker that fails (a server that is down or unreachable) is warned
about once and dropped for the rest of the run, which goes on. ``RUN/tracking.json`` records each tracker's run, so
a resumed run continues its own tracker run instead of opening a second one, and later artefacts (``report.html``,
an exported ``model.onnx``) are attached to it. A backend is one module with a class that follows :class:`Tracker`,
plus one line in :data:`TRACKERS`.
"""
from __future__ import annotations

import importlib
import json
import math
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..artifacts import write_json
from ..errors import ConfigError, MedtlWarning
from ..training.loop import Paused

if TYPE_CHECKING:
    from ..config import TrainConfig

# name -> "module:class"; config.TRACKERS lists the same names for the command line
TRACKERS = {"mlflow": "mlflow_run:MlflowTracker", "tensorboard": "tensorboard_run:TensorBoardTracker"}
RECORD = "tracking.json"
GRID_RECORD = "tracking.json"  # in a grid's output directory: its parent run
STATUS_FINISHED, STATUS_KILLED, STATUS_FAILED = "FINISHED", "KILLED", "FAILED"


class Tracker(Protocol):
    """One tracking backend for one run directory (or one grid directory)."""

    nests: bool  # has parent runs: a grid opens one and nests its runs under it

    def open(self, directory: Path, cfg: TrainConfig, record: dict | None, parent: str | None, name: str,
             tags: dict[str, str], store: Path, restored_through: int) -> dict:
        """Start a tracker run for ``directory``, or continue the one ``record`` (from ``tracking.json``) names (then
        the epochs after ``restored_through`` are trained again); log ``cfg`` as its parameters; return the record
        to keep. ``store``: where a default local store goes."""

    def log_epoch(self, row: dict) -> None:
        """One history row (``epoch`` is the step)."""

    def log_final(self, metrics: dict, artifacts: list[Path]) -> None:
        """The finished run's metrics (``metrics.json``) and artefact files."""

    def attach(self, record: dict, artifacts: list[Path]) -> None:
        """Files made after the run finished (report.html, model.onnx), to the run ``record`` names."""

    def close(self, status: str) -> None:
        """End the tracker run with ``status`` (FINISHED, KILLED: stopped to be resumed, FAILED)."""


def backend(name: str) -> Tracker:
    """A new tracker of ``name``; a missing optional package is a ConfigError naming the extra."""
    if name not in TRACKERS:
        raise ConfigError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}.")
    module, cls = TRACKERS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __name__), cls)()


def check(cfg: TrainConfig) -> None:
    """Fail before a run starts when a tracker it names cannot be imported (not when its server is down)."""
    for name in dict.fromkeys(cfg.track):
        backend(name)


class Tracking:
    """The trackers of one run or grid: every call goes to each, and a tracker that raises is warned about once and
    dropped (its error never reaches training)."""

    def __init__(self, trackers: dict[str, Tracker], where: Path):
        self.trackers = trackers
        self.where = where
        self.logged_through: dict[str, int] = {}  # per tracker: epochs it already has (a continued run's)

    def _each(self, call: Callable[[str, Tracker], None]) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                call(name, tracker)
            except Exception as e:  # noqa: BLE001 -- any tracker failure: the run goes on without it
                del self.trackers[name]
                first = (str(e).strip().splitlines() or [""])[0][:300]
                warnings.warn(f"{name} tracking failed ({type(e).__name__}: {first}); the run goes on without it "
                              f"and its results stay in {self.where}.", MedtlWarning, stacklevel=3)

    @classmethod
    def open(cls, cfg: TrainConfig, directory: Path, parent: str | None = None, name: str | None = None,
             tags: dict[str, str] | None = None, only_nesting: bool = False, store: Path | None = None,
             restored_through: int = 0) -> Tracking:
        """Open (or continue, from ``directory/tracking.json``) a tracker run of each of ``cfg.track``; a resumed
        run gives the last epoch of its checkpoint as ``restored_through``."""
        trackers = {n: backend(n) for n in dict.fromkeys(cfg.track)}
        if only_nesting:
            trackers = {n: t for n, t in trackers.items() if t.nests}
        tracking = cls(trackers, directory)
        if not trackers:
            return tracking
        saved = read_record(directory / RECORD)
        records = dict(saved)

        def start(n: str, t: Tracker) -> None:
            records[n] = t.open(directory, cfg, saved.get(n), parent, name or directory.name, tags or {},
                                store or directory.parent, restored_through)
            tracking.logged_through[n] = restored_through if saved.get(n) == records[n] else 0
        tracking._each(start)
        if records != saved:
            write_json(directory / RECORD, records)
        return tracking

    def continues(self, name: str) -> bool:
        return name in self.trackers

    def observe(self, report: Callable[[dict], bool] | None) -> Callable[[dict], bool] | None:
        """``report`` (a scheduler's epoch callback, or None) that also hands each history row to the trackers; the
        rows a continued tracker run already has (restored from the checkpoint) are not sent again."""
        if not self.trackers:
            return report

        def observed(row: dict) -> bool:
            self._each(lambda n, t: t.log_epoch(row) if row["epoch"] > self.logged_through.get(n, 0) else None)
            return True if report is None else report(row)
        return observed

    def finished(self, metrics: dict, artifacts: Iterable[Path] = ()) -> None:
        files = [Path(p) for p in artifacts if Path(p).is_file()]
        self._each(lambda n, t: t.log_final(metrics, files))
        self.close(STATUS_FINISHED)

    def close(self, status: str) -> None:
        self._each(lambda n, t: t.close(status))
        self.trackers = {}


def status_of(error: BaseException) -> str:
    """The tracker status of a run that stopped with ``error``: KILLED when it can be resumed (Ctrl-C, SIGTERM, a
    scheduler's pause), FAILED otherwise."""
    return STATUS_KILLED if isinstance(error, (KeyboardInterrupt, Paused)) else STATUS_FAILED


def read_record(path: Path) -> dict:
    """``tracking.json`` (``{}`` when absent or unreadable: a tracker then starts a new run)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def attach(directory: str | Path, artifacts: Iterable[Path | None]) -> None:
    """Add files made after a run or grid finished (report.html, model.onnx) to the tracker runs its
    ``tracking.json`` names; nothing when it has none."""
    directory = Path(directory)
    records = read_record(directory / RECORD)
    files = [Path(p) for p in artifacts if p is not None and Path(p).is_file()]
    if not records or not files:
        return
    tracking = Tracking({}, directory)
    for name in records:
        if name in TRACKERS:
            try:
                tracking.trackers[name] = backend(name)
            except ConfigError as e:
                warnings.warn(f"{directory} was tracked with {name}, which cannot be loaded now ({e}); "
                              f"{', '.join(f.name for f in files)} not attached.", MedtlWarning, stacklevel=2)
    tracking._each(lambda n, t: t.attach(records[n], files))


# ---- grids -----------------------------------------------------------------------------------------------------------
def open_grid(base: TrainConfig, out: Path, kind: str) -> TrainConfig:
    """A grid's parent run (continued when the grid is run again), and ``base`` with its id and URI, so that every
    run of the grid, in this process or another, nests under it; ``base`` unchanged when no tracker has parents."""
    from dataclasses import replace

    if not base.track:
        return base
    tracking = Tracking.open(base, out, parent=base.track_parent, name=f"{kind} {out.name}",
                             tags={"medtl.kind": kind}, only_nesting=True, store=out)
    record = read_record(out / GRID_RECORD).get("mlflow")
    if tracking.continues("mlflow") and record:  # the parent stays open until close_grid
        return replace(base, track_uri=record["uri"], track_parent=record["run_id"])
    return base


def close_grid(base: TrainConfig, out: Path, files: Iterable[Path]) -> None:
    """Attach the grid's tables to its parent run and mark it finished."""
    if not base.track or not (out / GRID_RECORD).is_file():
        return
    Tracking.open(base, out, only_nesting=True, store=out).finished({}, files)


# ---- helpers for backends ----------------------------------------------------------------------------------------
def params_of(cfg: TrainConfig) -> dict[str, str]:
    """The run's options as config.yaml saves them, each as text (lists and null as in JSON)."""
    import yaml

    values = yaml.safe_load(cfg.to_yaml()) or {}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if not k.startswith("track")}


def final_metrics(metrics: dict) -> dict[str, float]:
    """The numbers of ``metrics.json`` by name: confidence intervals as ``<name>_low``/``<name>_high``, numbers in
    nested mappings as ``<key>.<name>``; a name that is also a per-epoch series (``val_auroc``: the selected epoch's)
    gets ``best_`` in front, so that the series keeps its own last value."""
    out: dict[str, float] = {}

    def add(key: str, value) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[metric_name(f"best_{key}" if is_series(key) else key)] = float(value)
        elif isinstance(value, list) and len(value) == 2 and key.endswith("_ci") and \
                all(isinstance(v, (int, float)) for v in value):
            add(f"{key}_low", value[0])
            add(f"{key}_high", value[1])
        elif isinstance(value, dict) and key not in TAGGED:
            for k, v in value.items():
                add(f"{key}.{k}", v)
    for key, value in metrics.items():
        add(key, value)
    return out


def metric_name(name: str) -> str:
    """``name`` with the characters trackers refuse in names (MLflow: all but letters, digits and ``_-. :/``; class
    names like "normal, benign" have commas) as ``_``."""
    return re.sub(r"[^\w\-. :/]", "_", name)


def is_series(name: str) -> bool:
    """Whether ``name`` is a column of history.csv, logged per epoch."""
    return name.startswith(("train_", "val_")) or name in ("lr", "seconds", "image_size")


TAGGED = ("data_fingerprint", "provenance", "data_source", "weights_source", "split_counts")


def tags_of(metrics: dict) -> dict[str, str]:
    """The text of ``metrics.json`` as tags: the data fingerprint, provenance, data source and names (backbone,
    cut, strategy), flattened as ``medtl.<key>.<name>``."""
    out: dict[str, str] = {}

    def add(key: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{key}.{k}", v)
        elif value is not None:
            out[metric_name(f"medtl.{key}")] = value if isinstance(value, str) else json.dumps(value)
    for key, value in metrics.items():
        if key in TAGGED or isinstance(value, str):
            add(key, value)
    return out
