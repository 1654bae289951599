"""``medtl report``: one self-contained ``report.html`` for a run, a ``medtl compare`` grid or a ``medtl search``.

Self-contained means it opens anywhere, offline and years later: figures are inline PNGs (``data:`` URIs), the style
sheet is inline, and nothing is fetched. The page is rendered from what the commands wrote (``metrics.json``,
``predictions_test.csv``, ``history.csv``, the grid's CSV tables), so it can be written again at any time, and it
shows what a run recorded and says what it did not.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from .. import optional
from ..artifacts import atomic_write
from ..errors import ConfigError, MedtlWarning
from ..rundir import GridDir, RunDir, SearchDir
from .grid import grid_page, search_page
from .run import run_page

REPORT = RunDir.REPORT
TEMPLATE = "template.html.j2"


def kind_of(directory: Path) -> str:
    """``run``, ``grid`` or ``search``, from the files the commands write."""
    if SearchDir.finished(directory):
        return "search"
    if GridDir.finished(directory):
        return "grid"
    if RunDir(directory).finished:
        return "run"
    raise ConfigError(f"{directory} is neither a finished run ({RunDir.METRICS}), a `medtl compare` output "
                      f"({', '.join(GridDir.FILES)}) nor a `medtl search` output ({', '.join(SearchDir.FILES)}).")


def require() -> None:
    """Fail early, naming the extra that provides what the report is drawn and rendered with."""
    optional.require_all(["matplotlib", "jinja2"], extra="plot", purpose="the report")


def render(page: dict) -> str:
    jinja2 = optional.require("jinja2", extra="plot", purpose="the report")

    environment = jinja2.Environment(loader=jinja2.PackageLoader("medtl", "report"),
                                     autoescape=jinja2.select_autoescape(default=True), trim_blocks=True,
                                     lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return environment.get_template(TEMPLATE).render(page=page)


def write_report(directory: str | Path) -> Path:
    """Write ``report.html`` into ``directory`` (a run, a compare grid or a search) and return its path."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory.")
    kind = kind_of(directory)
    require()
    build = {"run": run_page, "grid": grid_page, "search": search_page}[kind]
    path = directory / REPORT
    atomic_write(path, render(build(directory)))
    return path


def report_after(directory: str | Path) -> Path | None:
    """The report that ``train``, ``compare`` and ``search`` write when they finish; without matplotlib or jinja2 a
    warning instead of an error, since the results themselves are already written."""
    try:
        require()
    except ConfigError as e:
        warnings.warn(f"no report.html: {e}", MedtlWarning, stacklevel=2)
        return None
    return write_report(directory)
