"""Artefacts: the trained model as safetensors + JSON (how files are written is :mod:`medtl.files`).

A saved model is ``model.safetensors`` (tensors only, safe to open from anywhere) and ``model.json`` (the
:class:`~medtl.model.ModelSpec`: backbone, cut, head, preprocessing, classes). Nothing here unpickles.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ConfigError
from .formats import versioned
# the file helpers moved to .files (below the data layer); importers of medtl.artifacts keep finding them here
from .files import (PARTIAL_WRITE, UMASK, atomic_file, atomic_write, check_out_dir, check_out_file,  # noqa: F401
                    remove_partial_writes, write_csv, write_json)
from .model import Classifier, ModelSpec, rebuild

MODEL_WEIGHTS = "model.safetensors"
MODEL_SPEC = "model.json"


def weights_sha256(directory: str | Path) -> str:
    """SHA-256 of a run's ``model.safetensors``: names the exact weights an ensemble or a new run was made from."""
    digest = hashlib.sha256()
    with open(Path(directory) / MODEL_WEIGHTS, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: Classifier, directory: Path) -> None:
    """Write `model.safetensors` (weights only) and `model.json` (its `ModelSpec`) into `directory`, atomically.

    Args:
        model: a classifier built by medtl.
        directory: an existing directory.
    """
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / MODEL_WEIGHTS, save(state, metadata={"format": "pt"}))
    write_json(directory / MODEL_SPEC, versioned(model.spec.to_dict()))


def load_model(directory: str | Path) -> Classifier:
    """Rebuild a saved classifier from `model.json` and load `model.safetensors` (strictly).

    Args:
        directory: a run directory, or any directory holding `model.json` and `model.safetensors`.

    Returns:
        The classifier in eval mode; `model.spec` says how to preprocess its input.

    Raises:
        ConfigError: the files are missing, damaged or of another model.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (MODEL_SPEC, MODEL_WEIGHTS):
        if not (directory / name).is_file():
            raise ConfigError(f"{directory} is not a medtl run or model directory: {name} is missing.")
    try:
        values = json.loads((directory / MODEL_SPEC).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{directory / MODEL_SPEC} is not a valid medtl model description ({e}).") from e
    spec = ModelSpec.from_dict(values, str(directory / MODEL_SPEC))
    model = rebuild(spec)
    try:
        model.load_state_dict(load_file(str(directory / MODEL_WEIGHTS)), strict=True)
    except Exception as e:  # noqa: BLE001 -- a damaged safetensors file or tensors of another model
        raise ConfigError(f"{directory / MODEL_WEIGHTS} does not hold this model's weights "
                          f"({type(e).__name__}: {str(e).splitlines()[0]}); the run directory is damaged.") from e
    return model.eval()
