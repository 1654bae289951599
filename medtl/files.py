"""Files written safely: atomically (whole or not at all, with the user's umask), and destinations checked before a
command does any work. Below every other module but ``errors``, so the data layer can use it too."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import ConfigError

PARTIAL_WRITE = re.compile(r"\.[^/]+\.[a-z0-9_]{8}")  # tempfile.mkstemp(prefix=".<name>.") in atomic_file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it


@contextmanager
def atomic_file(path: Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """An open temporary file beside ``path`` that becomes ``path`` when the block ends without an error, so that a
    reader (or a crash) never sees a half-written file; on an error it is removed and ``path`` stays as it was.

    The file gets the permissions of any other file the user creates (``0666 & ~umask``; mkstemp's are 0600). A
    full disk or a read-only directory is a ConfigError naming the file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}.") from e
    in_block = False  # an error of the caller's block is its own, not a failed write
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            try:
                yield f
            except BaseException:
                in_block = True
                raise
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if in_block:
            raise
        raise ConfigError(f"cannot write {path}: {e.strerror}; free space or choose another --out (files already "
                          "written, the last good checkpoint included, are intact).") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`. Text is UTF-8, with file names that are not valid
    UTF-8 kept as backslash escapes rather than failing the write."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data)


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Fail before any work unless ``path`` is a folder this process can write into, or can create (nothing is
    created here): a command must not spend minutes and then find its destination unusable."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a folder; {option} names a folder to write into: "
                          "choose another.")
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        raise ConfigError(f"{option} {path} cannot be created: {existing} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {existing} is not writable (permission denied or a read-only file "
                          f"system); choose another {option}.")
    return path


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """As :func:`check_out_dir`, for a file to (over)write: not a folder, in a folder that can be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; {option} names the file to write (e.g. "
                          f"{path / 'predictions.csv'}).")
    check_out_dir(path.parent, option)
    return path


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


def make_dir(path: str | Path) -> Path:
    """``mkdir -p`` with a ConfigError that says what is wrong (a file in the way, no permission, no space)."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{path} exists and is not a directory; choose another --out.") from None
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror}; choose another --out.") from e
    return path
