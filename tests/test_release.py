"""Release metadata has one source: the version is written once, in ``medtl/__init__.py``, and everything that shows
a version (the wheel's metadata, ``medtl --version``) reads it from there. The wheel itself is tested in
``test_wheel.py`` (slow)."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import ROOT

import medtl

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "medtl.__version__"}
    # setuptools reads the attribute from the source text (no import of torch) only if it is a plain literal
    tree = ast.parse((ROOT / "medtl" / "__init__.py").read_text())
    (literal,) = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                  and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]]
    assert literal == medtl.__version__


def test_cli_prints_the_package_version():
    done = subprocess.run([sys.executable, "-m", "medtl", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"medtl {medtl.__version__}"


def test_the_package_declares_its_type_hints():
    assert (ROOT / "medtl" / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["medtl"]
