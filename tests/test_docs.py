"""The documentation site and the README.

The site builds with `mkdocs build --strict` (a broken link, anchor, snippet or docstring fails it), and its command
line reference, generated from the parsers at build time, holds every flag and help text that `medtl train --help`
prints. The build skips only where mkdocs is not installed locally; on CI (CI set) it fails instead.
"""
from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx")
README_MAX_LINES = 250
# the offline plugin writes page.html (not page/index.html), so the site also works from file://
MAIN_PAGES = ("index.html", "getting-started/builtin-data.html", "guide/choosing-the-cut.html",
              "results/index.html", "reference/cli.html")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _require_mkdocs() -> None:
    missing = _missing_docs_packages()
    if missing:
        message = f"{', '.join(missing)} not installed (pip install -e '.[docs]')"
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the documentation, and {message}.")
        pytest.skip(f"{message}; CI builds the documentation")


def _env() -> dict[str, str]:
    """This checkout's medtl first on the path, wide help output, mkdocs' banners off."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", "NO_MKDOCS_2_WARNING": "1"}


def _cli_reference_module():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(markup: str) -> str:
    """Markdown table cells or HTML as plain text with single spaces (escapes undone, tags dropped)."""
    markup = re.sub(r"<[^>]+>", "", markup).replace("\\|", "|")
    return " ".join(html.unescape(markup).split())


def train_help() -> list[tuple[list[str], str]]:
    """(flags, help) of every option `medtl train --help` prints, the help unwrapped."""
    out = subprocess.run([sys.executable, "-m", "medtl", "train", "--help"], capture_output=True, text=True,
                         env=_env(), cwd=ROOT, timeout=120, check=True).stdout
    section = out.split("\noptions:\n", 1)[1]
    entries: list[list[str]] = []
    for line in section.splitlines():
        if re.match(r"^  -", line):
            invocation, _, rest = line.strip().partition("  ")
            entries.append([invocation, rest.strip()])
        elif line.startswith("   ") and entries:
            entries[-1][1] += " " + line.strip()
    options = [(re.findall(r"--?[A-Za-z][\w-]*", invocation), " ".join(text.split())) for invocation, text in entries]
    return [(flags, text) for flags, text in options if "--help" not in flags]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _require_mkdocs()
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_train_help_is_parsed():
    options = train_help()
    flags = {f for fs, _ in options for f in fs}
    assert {"--data", "--cut", "--split-seed", "--precision", "--compile", "--cudnn-benchmark"} <= flags
    assert all(text for _, text in options), [fs for fs, text in options if not text]


def test_generated_cli_reference_has_every_train_flag_and_help():
    """Without mkdocs: the hook's Markdown holds what `--help` prints, so the two cannot drift apart."""
    reference = _cli_reference_module().render()
    train = reference.split("## `medtl evaluate`")[0]
    text = _text(train)
    for flags, help_text in train_help():
        for flag in flags:
            assert f"`{flag}`" in train, f"{flag} is missing from the CLI reference"
        assert help_text in text, f"the help of {flags[0]} differs in the CLI reference: {help_text!r}"


def test_generated_cli_reference_has_every_command():
    from medtl.cli import build_parser

    reference = _cli_reference_module().render()
    commands = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices
    for name, parser in commands.items():
        nested = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        names = [f"medtl {name} {sub}" for sub in nested[0].choices] if nested else [f"medtl {name}"]
        for full in names:
            assert f"## `{full}`" in reference, full


@pytest.mark.slow  # builds the whole site
def test_site_builds_strict_with_the_cli_reference(site):
    page = site / "reference" / "cli.html"
    text = _text(page.read_text(encoding="utf-8"))
    for flags, help_text in train_help():  # Markdown renders `code` without its backticks
        assert help_text.replace("`", "") in text, f"the built CLI reference lacks the help of {flags[0]}"
    for page in MAIN_PAGES + ("reference/api.html", "changelog.html"):
        assert (site / page).is_file(), page


@pytest.mark.slow  # builds the whole site
def test_api_reference_has_no_sphinx_roles(site):
    """mkdocstrings prints reST roles literally: the documented docstrings use Markdown."""
    text = _text((site / "reference" / "api.html").read_text(encoding="utf-8"))
    assert "train(" in text and "load_dataset(" in text
    roles = re.findall(r":(?:class|func|meth|mod|data|attr):`[^`]*`", text)
    assert not roles, roles
    assert "``" not in text


@pytest.mark.slow  # builds the whole site
def test_changelog_page_includes_changelog(site):
    text = _text((site / "changelog.html").read_text(encoding="utf-8"))
    assert "Unreleased" in text and "0.1.0" in text


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < README_MAX_LINES
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


@pytest.mark.slow  # a browser start per page
@pytest.mark.parametrize("page", MAIN_PAGES)
def test_main_pages_render_in_chromium_without_errors(site, page, tmp_path):
    """From file://, with name resolution off: no script error, no failed or remote load, the content is there."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                   None)
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must render the documentation in Chromium, and none is installed (.ci/run installs it).")
        pytest.skip("no Chromium here (apt-get install chromium); CI runs this test")
    done = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                           "--dump-dom", (site / page).as_uri()], capture_output=True, text=True, timeout=180)
    errors = [line for line in done.stderr.splitlines()
              if re.search(r"Uncaught|Failed to load|net::ERR|:CONSOLE\(\d+\)\] .*error", line, re.I)]
    assert not errors, errors
    assert 'class="md-content"' in done.stdout and "<h1" in done.stdout
