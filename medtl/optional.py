"""Optional dependencies: the one way medtl imports a package that an extra of ``pyproject.toml`` installs.

A feature that needs such a package imports it where it is used, through :func:`require`, never at the top of a
module (``import medtl`` and ``medtl --help`` must work without any extra)::

    from ..optional import require

    def export(...):
        onnx = require("onnx", extra="export", purpose="medtl export")

When the package is missing, every feature fails the same way: a :class:`~medtl.errors.ConfigError` (exit status 2
on the command line, no traceback) that names what needed it and the command that installs it::

    medtl export needs onnx, which is not installed: pip install "medtl[export]"

A new optional dependency goes into an extra of ``pyproject.toml`` (and into ``dev``, so the tests have it), into
:data:`EXTRAS` below, and into ``OPTIONAL`` of tests/test_imports.py. :func:`available` answers whether a package is
importable without importing it, for features that are skipped (and say so) rather than refused."""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import ConfigError

EXTRAS = {  # import name -> the extra of pyproject.toml that installs it
    "matplotlib": "plot", "jinja2": "plot",
    "onnx": "export", "onnxscript": "export", "onnxruntime": "export",
    "ray": "ray",
    "mlflow": "track", "sqlalchemy": "track", "alembic": "track", "tensorboardX": "track",
    "peft": "peft",
    "fastapi": "serve", "uvicorn": "serve", "python_multipart": "serve",
    "nibabel": "3d", "pydicom": "dicom",  # the 3d extra installs pydicom too, for DICOM series
}


def install_hint(module: str) -> str:
    """``pip install "medtl[extra]"`` for the extra that provides ``module``."""
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise KeyError(f"{top} is not an optional dependency of medtl; add it to medtl.optional.EXTRAS")
    return f'pip install "medtl[{EXTRAS[top]}]"'


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` (``"onnx"``, ``"ray.tune"``), imported; a :class:`ConfigError` naming ``purpose`` and the extra
    when it (or a package it needs) is not installed. ``extra`` must be the one :data:`EXTRAS` lists for it: the
    call site says which extra it relies on, and this check keeps the two from drifting apart."""
    top = module.split(".")[0]
    if EXTRAS.get(top) != extra:
        raise KeyError(f"{top} is installed by the extra {EXTRAS.get(top)!r}, not {extra!r} "
                       "(see medtl.optional.EXTRAS)")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or top).split(".")[0]
        raise ConfigError(f"{purpose} needs {missing}, which is not installed: {install_hint(top)}") from None


def require_all(modules: list[str], extra: str, purpose: str) -> list[ModuleType]:
    """:func:`require` for each of ``modules``; the message names every missing one at once."""
    missing = [m for m in modules if not available(m)]
    if missing:
        for m in missing:
            install_hint(m)  # each must be a known optional dependency
        raise ConfigError(f"{purpose} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                          f"installed: {install_hint(missing[0])}")
    return [require(m, extra, purpose) for m in modules]


def available(module: str) -> bool:
    """Whether ``module`` can be imported (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
