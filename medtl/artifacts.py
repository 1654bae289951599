"""Run directories and artefacts: atomic writes, the trained model as safetensors + JSON, CSV tables.

A saved model is ``model.safetensors`` (tensors only, safe to open from anywhere) and ``model.json`` (the
:class:`~medtl.model.ModelSpec`: backbone, cut, head, preprocessing, classes). Nothing here unpickles.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from .errors import ConfigError
from .model import Classifier, ModelSpec, rebuild

MODEL_WEIGHTS = "model.safetensors"
MODEL_SPEC = "model.json"
PARTIAL_WRITE = re.compile(r"\.[^/]+\.[a-z0-9_]{8}")  # tempfile.mkstemp(prefix=".<name>.") in atomic_write


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) never sees a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(directory: Path) -> None:
    """Delete the temporary files of :func:`atomic_write` that a killed process left in ``directory``."""
    for path in directory.glob(".*"):
        if PARTIAL_WRITE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buffer.getvalue())


LOCK = ".lock"


@contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive lock on ``run_dir`` while one process trains there, so that a second ``--resume`` of the
    same run, or a second grid (``medtl compare``/``search`` started twice, or a sweep across machines sharing the
    directory) fails at once instead of two processes writing the same checkpoint. The lock is the operating
    system's (``flock``): it is released when the process ends, however it ends, so it never goes stale."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one process per run is then the user's to keep
        yield
        return
    with open(run_dir / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{run_dir} is being trained by another process right now; wait for it to finish "
                              f"(or stop it) before training or resuming this run.") from None
        yield


def new_run_dir(out: str | Path, name: str) -> Path:
    """A fresh directory ``out/<timestamp>-<name>``; never reuses one (safe with concurrent runs)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    for i in range(1000):
        path = out / (stem if i == 0 else f"{stem}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"could not create a new run directory under {out}.")


def save_model(model: Classifier, directory: Path) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / MODEL_WEIGHTS, save(state, metadata={"format": "pt"}))
    write_json(directory / MODEL_SPEC, model.spec.to_dict())


def load_model(directory: str | Path) -> Classifier:
    """Rebuild a saved classifier from ``model.json`` and load ``model.safetensors`` (strictly)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (MODEL_SPEC, MODEL_WEIGHTS):
        if not (directory / name).is_file():
            raise ConfigError(f"{directory} is not a medtl run or model directory: {name} is missing.")
    try:
        spec = ModelSpec(**json.loads((directory / MODEL_SPEC).read_text()))
    except (ValueError, TypeError) as e:  # bad JSON, a non-object, unknown or missing keys
        raise ConfigError(f"{directory / MODEL_SPEC} is not a valid medtl model description ({e}).") from e
    model = rebuild(spec)
    try:
        model.load_state_dict(load_file(str(directory / MODEL_WEIGHTS)), strict=True)
    except Exception as e:  # noqa: BLE001 -- a damaged safetensors file or tensors of another model
        raise ConfigError(f"{directory / MODEL_WEIGHTS} does not hold this model's weights "
                          f"({type(e).__name__}: {str(e).splitlines()[0]}); the run directory is damaged.") from e
    return model.eval()
