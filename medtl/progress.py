"""Progress output: a tqdm bar on a terminal; in a log file or a pipe, one line per step of work (an epoch) instead
of the bar's carriage-return redraws, which fill a log with thousands of updates on one line."""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as notebook_or_terminal
from tqdm.std import tqdm as terminal_tqdm


def progress(*, total: int, desc: str = "", unit: str = "it", disable: bool = False, **bar):
    """A tqdm bar where it can be redrawn (a terminal, a notebook), else a :class:`LineProgress`."""
    if disable or notebook_or_terminal is not terminal_tqdm or sys.stderr.isatty():  # a notebook draws a widget
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, **bar)
    return LineProgress(total, desc, unit)


class LineProgress:
    """The part of tqdm's interface medtl uses; it writes a line when the description changes (the previous step
    is done) and when it is closed."""

    def __init__(self, total: int, desc: str = "", unit: str = "it") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.postfix, self.began = 0, {}, time.monotonic()
        self._shown = (None, -1)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = values

    def set_description(self, desc: str) -> None:
        if desc != self.desc:
            self._line()
        self.desc = desc

    def _line(self) -> None:
        if self.n == 0 or self._shown == (self.desc, self.n):
            return
        self._shown = (self.desc, self.n)
        values = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total} {self.unit}{values}, "
              f"{time.monotonic() - self.began:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._line()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
