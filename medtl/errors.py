"""Errors a user can act on.

Every error raised for bad input derives from `MedtlError`; the command line prints its message
(no traceback) and exits with status 2.
"""
from __future__ import annotations

import difflib


class MedtlError(Exception):
    """Bad input or an unavailable resource, with a message that says what to do."""


class DataError(MedtlError):
    """A data set, file or row cannot be used."""


class ConfigError(MedtlError):
    """An option or configuration value is invalid."""


class WeightsUnavailableError(MedtlError):
    """Pretrained weights were asked for but cannot be loaded (never replaced by random ones)."""


class TrainingError(MedtlError):
    """Training cannot go on (a non-finite loss); the last good checkpoint is kept."""


class MedtlWarning(UserWarning):
    """Something the user should look at that does not stop the run (skipped files, a model at chance level)."""


def unknown(kind: str, name: str, valid: list[str], listing: str | None = None) -> ConfigError:
    """A ``ConfigError`` for an unknown name that suggests the nearest valid ones; with ``listing`` (how to list
    the valid names, for lists too long to print) that instead of the whole list. Never an empty list."""
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    rest = f" {listing}" if listing else f" Valid: {', '.join(valid)}." if valid else ""
    return ConfigError(f"unknown {kind} {name!r}.{hint}{rest}")
