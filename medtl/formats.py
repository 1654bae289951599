"""The version of medtl's file formats (``model.json`` and ``metrics.json``), written into each file, so that a
reader can tell a file it knows from one written by a newer medtl, and a later change of layout can still read the
old one. Files written before the field existed are version 1."""
from __future__ import annotations

from .errors import ConfigError

FORMAT_VERSION = 2  # 2: format_version recorded; 1: the files of earlier medtl versions
KEY = "format_version"


def versioned(values: dict) -> dict:
    """``values`` with this medtl's format version first."""
    return {KEY: FORMAT_VERSION, **{k: v for k, v in values.items() if k != KEY}}


def format_version(values: dict, source: str) -> int:
    """The format version of a loaded file (1 when it records none); a ConfigError for one this medtl cannot read."""
    version = values.get(KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: {KEY} must be a positive whole number, got {version!r:.40}.")
    if version > FORMAT_VERSION:
        raise ConfigError(f"{source} has format version {version}, written by a newer medtl than this one (which reads "
                          f"up to {FORMAT_VERSION}); upgrade medtl to use it.")
    return version
