"""mkdocs hook: the CLI reference is rendered from ``medtl.cli.build_parser()`` at build time, so it cannot drift
from ``medtl ... --help``; ``tests/test_docs.py`` checks it against ``medtl train --help``.

docs/reference/cli.md holds the marker ``<!-- cli-reference -->``; this hook replaces it with one section per command
(usage, positional arguments, options with their help, and for ``train`` the metadata of each ``TrainConfig`` field).
"""
from __future__ import annotations

import argparse
import html
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- cli-reference -->"


def _import_medtl():
    """The checkout's medtl, not an installed copy, so the reference documents the code it is built with."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from medtl import cli, config
    return cli, config


def _cell(text: str) -> str:
    """Table-cell safe: HTML-escaped, pipes escaped, one line."""
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _commands(parser: argparse.ArgumentParser, prefix: str = "medtl"):
    """(name, help, parser) for every command, depth first (``medtl analyze reuse``, ``medtl data check``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{prefix} {name}"
                nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                if nested:
                    yield from _commands(sub, full)
                else:
                    yield full, helps.get(name) or "", sub


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text exactly as ``--help`` prints it (``%(default)s`` expanded), before line wrapping."""
    if not action.help:
        return ""
    return " ".join(parser._get_formatter()._expand_help(action).split())


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(f"`{s}`" for s in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices
                                 else action.dest.upper())
    return f"{names} `{metavar}`"


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _usage(parser: argparse.ArgumentParser) -> str:
    """Usage wrapped at 90 columns whatever the terminal that builds the docs."""
    formatter = argparse.HelpFormatter(parser.prog, width=90)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip("\n")


def _notes(config_module, dest: str) -> str:
    """What ``TrainConfig``'s metadata says beyond the help: range, choices, resume, grids, config.yaml."""
    meta = {f.name: f.metadata for f in fields(config_module.TrainConfig)}.get(dest)
    if meta is None:
        return ""
    notes = []
    if meta["choices"]:
        notes.append("one of " + ", ".join(f"`{c}`" for c in meta["choices"]))
    if meta["low"] is not None or meta["high"] is not None:
        low = "(" if meta["low_open"] else "["
        high = ")" if meta["high_open"] else "]"
        lo = "-∞" if meta["low"] is None else _number(meta["low"])
        hi = "∞" if meta["high"] is None else _number(meta["high"])
        notes.append(f"range {low}{lo}, {hi}{high}")
    if meta["run_only"]:
        notes.append("run option (does not change what the run learns)")
    elif meta["resume"]:
        notes.append("may be given with `--resume`")
    if not meta["grid"]:
        notes.append("not accepted by `compare`/`search`")
    if not meta["persist"]:
        notes.append("flag only, never a YAML key")
    return "; ".join(notes)


def render() -> str:
    """The whole reference as Markdown."""
    cli, config_module = _import_medtl()
    parser = cli.build_parser()
    out = []
    for name, summary, sub in _commands(parser):
        out.append(f"## `{name}`\n")
        if summary:
            out.append(_cell(summary) + "\n")
        out.append("```text\n" + _usage(sub) + "\n```\n")
        positionals = [a for a in sub._actions if not a.option_strings and a.help != argparse.SUPPRESS]
        options = [a for a in sub._actions if a.option_strings and a.help != argparse.SUPPRESS
                   and not isinstance(a, argparse._HelpAction)]
        if positionals:
            out.append("| argument | help |\n|---|---|")
            out += [f"| {_flags(a)} | {_cell(_help(sub, a))} |" for a in positionals]
            out.append("")
        if options:
            config_flags = name in ("medtl train",)
            if config_flags:
                out.append("| option | help | notes |\n|---|---|---|")
                out += [f"| {_flags(a)} | {_cell(_help(sub, a))} | {_notes(config_module, a.dest)} |" for a in options]
            else:
                out.append("| option | help |\n|---|---|")
                out += [f"| {_flags(a)} | {_cell(_help(sub, a))} |" for a in options]
            out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
