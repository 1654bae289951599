"""Run directories and artefacts: atomic writes, the trained model as safetensors + JSON, CSV tables.

A saved model is ``model.safetensors`` (tensors only, safe to open from anywhere) and ``model.json`` (the
:class:`~medtl.model.ModelSpec`: backbone, cut, head, preprocessing, classes). Nothing here unpickles.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path


from .errors import ConfigError
from .model import Classifier, ModelSpec, rebuild

MODEL_WEIGHTS = "model.safetensors"
MODEL_SPEC = "model.json"
PARTIAL_WRITE = re.compile(r"\.[^/]+\.[a-z0-9_]{8}")  # tempfile.mkstemp(prefix=".<name>.") in atomic_write


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) never sees a half-written file.

    Text is UTF-8, with file names that are not valid UTF-8 kept as backslash escapes rather than failing the write.
    The file gets the permissions of any other file the user creates (``0666 & ~umask``; mkstemp's are 0600). A
    full disk or a read-only directory is a ConfigError naming the file; the previous version of it stays intact."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}.") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {e.strerror}; free space or choose another --out (files already "
                          "written, the last good checkpoint included, are intact).") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(directory: Path) -> None:
    """Delete the temporary files of :func:`atomic_write` that a killed process left in ``directory``."""
    for path in directory.glob(".*"):
        if PARTIAL_WRITE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buffer.getvalue())


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
    write_json(directory / MODEL_SPEC, model.spec.to_dict())


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
