"""File names as text that can always be printed and written.

On POSIX a file name is bytes; Python decodes the bytes that are not UTF-8 to lone surrogates
(``os.fsdecode``, "surrogateescape"), which ``print``, ``json`` with ``ensure_ascii=False`` and UTF-8 files refuse
(UnicodeEncodeError). Every path the data layer puts into a message, an image id or ``source`` goes through
:func:`printable`, which shows such bytes as backslash escapes (``b"scan\\xff.png"`` → ``scan\\xff.png``).
"""
from __future__ import annotations

import os
from pathlib import PurePath


def printable(name: str | PurePath | bytes) -> str:
    """``name`` as valid Unicode text: bytes that are not UTF-8 become ``\\xNN`` (nothing else changes)."""
    raw = os.fsencode(name)
    return raw.decode("utf-8", "backslashreplace")
