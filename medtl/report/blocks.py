"""The building blocks of a report page (plain dicts the template renders by ``type``) and the formatting of
values, shared by the run, grid and search pages."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..errors import ConfigError


def section(title: str, *blocks: dict | None) -> dict:
    """A titled part of the page; ``None`` blocks (something the run did not record) are left out."""
    anchor = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")
    return {"title": title, "id": anchor, "blocks": [b for b in blocks if b]}


def cards(items: list[tuple[str, str, str | None]]) -> dict:
    """Headline numbers: ``(label, value, detail)``."""
    return {"type": "cards", "items": [{"label": a, "value": b, "detail": c} for a, b, c in items]}


def table(header: list[str], rows: list[list], caption: str | None = None, keys: list[list[str | None]] | None = None,
          highlight: list[bool] | None = None) -> dict:
    """A table; ``keys`` (one per cell, or None) become ``data-key`` attributes, so a test (or a script) can find a
    value; ``highlight`` marks rows."""
    return {"type": "table", "header": header, "rows": rows, "caption": caption,
            "keys": keys or [[None] * len(r) for r in rows], "highlight": highlight or [False] * len(rows)}


def figure(uri: str, caption: str | None = None, alt: str = "", size: str = "wide") -> dict:
    """One figure; ``size`` ``wide`` (the text width), ``half`` (two side by side) or ``natural``."""
    return {"type": "figure", "uri": uri, "caption": caption, "alt": alt or caption or "figure", "size": size}


def row(*figures: dict | None) -> dict | None:
    """Figures side by side (they wrap on narrow screens)."""
    shown = [f for f in figures if f]
    return {"type": "row", "figures": shown} if shown else None


def pairs(items: list[tuple[str, object]], caption: str | None = None) -> dict | None:
    """A definition list of ``(name, value)``."""
    shown = [(k, fmt(v)) for k, v in items if v is not None]
    return {"type": "pairs", "items": shown, "caption": caption} if shown else None


def pre(text: str, summary: str, open_: bool = False) -> dict:
    """Preformatted text (a config file), folded under ``summary``."""
    return {"type": "pre", "text": text, "summary": summary, "open": open_}


def note(text: str) -> dict:
    return {"type": "note", "text": text}


def links(items: list[tuple[str, str]]) -> dict | None:
    """Relative links to files next to the report (other reports), never to the network."""
    return {"type": "links", "items": items} if items else None


def fmt(value, digits: int = 4) -> str:
    """A value as the page shows it: floats to ``digits`` decimals (tiny ones in scientific notation), integers
    with thousands separators, lists of two numbers as a confidence interval, missing values as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value == 0 or abs(value) >= 10 ** -(digits - 1) else f"{value:.2e}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{fmt(float(value[0]), digits)}, {fmt(float(value[1]), digits)}]"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def pm(row: dict, key: str, digits: int = 3) -> str:
    """``mean ± std`` of ``key`` in a summary row."""
    mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def millions(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value / 1e6:.{digits}f}"


def read_rows(path: Path) -> list[dict]:
    """A CSV written by medtl, with numbers parsed back (empty cells: None; ``True``/``False``: booleans)."""
    try:
        with open(path, newline="") as f:
            return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror}).") from None


def _parse(text: str | None):
    if text is None or text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} ({e}).") from None
