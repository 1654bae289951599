"""The package's import graph: every module imports on its own (no import cycle hidden by the order in which
modules happen to be imported), no function imports a medtl module (a function-local import is how a cycle is
dodged rather than removed), and ``import medtl`` stays light."""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "medtl"
# third-party dependencies that are optional or heavy; a function may import these lazily (none is a medtl module)
OPTIONAL = {"matplotlib", "onnx", "onnxruntime", "ray", "nibabel", "pydicom", "jinja2"}


def medtl_modules() -> list[str]:
    """Every module of the package, found from the files (nothing is imported): ``medtl``, ``medtl.api``, ..."""
    names = ["medtl"]
    for info in pkgutil.walk_packages([str(PACKAGE)], "medtl.", onerror=lambda name: None):
        if not info.name.endswith(".__main__"):  # running it is `python -m medtl`, not an import
            names.append(info.name)
    return sorted(names)


def test_the_walk_finds_every_module_file():
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}
    assert set(medtl_modules()) == files


# One fresh interpreter; before each module every medtl module is dropped from sys.modules, so each is imported on
# its own, as if first (third-party modules stay loaded: importing torch once is enough).
IMPORT_EACH = """
import importlib, json, sys, traceback
failed = {}
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "medtl" or m.startswith("medtl.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in json.loads(OPTIONAL):
            continue  # an optional dependency that is not installed here
        failed[name] = traceback.format_exc()
    except BaseException:
        failed[name] = traceback.format_exc()
print(json.dumps(failed))
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    modules = medtl_modules()
    assert len(modules) > 20
    code = IMPORT_EACH.replace("json.loads(OPTIONAL)", repr(sorted(OPTIONAL)))
    proc = subprocess.run([sys.executable, "-c", code, *modules], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failed, "\n\n".join(f"{name}:\n{tb}" for name, tb in failed.items())


def function_local_medtl_imports(package: Path = PACKAGE) -> list[str]:
    """``path:line: import`` for every import of a medtl module inside a function (relative imports are medtl's)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package.parent)
        for function in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for node in ast.walk(function):
                relative_or_medtl = isinstance(node, ast.ImportFrom) and (
                    node.level > 0 or (node.module or "").split(".")[0] == "medtl")
                if relative_or_medtl:
                    names = ", ".join(a.name for a in node.names)
                    found.append(f"{where}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {names}")
                elif isinstance(node, ast.Import):
                    found += [f"{where}:{node.lineno}: import {a.name}" for a in node.names
                              if a.name.split(".")[0] == "medtl"]
    return sorted(set(found), key=lambda line: (line.split(":")[0], int(line.split(":")[1])))  # nested: seen twice


def test_the_static_check_finds_function_local_medtl_imports_only(tmp_path):
    package = tmp_path / "medtl"
    package.mkdir()
    (package / "m.py").write_text(
        "import os\nfrom . import errors\nimport medtl.api\n\n"
        "def f():\n    from .api import train\n    import medtl.cli as cli\n    import matplotlib\n"
        "    from onnx import helper\n    def g():\n        from ..medtl import config\n    return train\n")
    assert function_local_medtl_imports(package) == [
        "medtl/m.py:6: from .api import train", "medtl/m.py:7: import medtl.cli",
        "medtl/m.py:11: from ..medtl import config"]


def test_no_function_imports_a_medtl_module():
    """A function-local import of a medtl module hides an import cycle instead of removing it; optional third-party
    dependencies (``OPTIONAL``) may still be imported lazily. The command line is the one exception, for start-up
    time: ``medtl --help`` must not load torch, so each command imports what it runs."""
    found = [line for line in function_local_medtl_imports() if not line.startswith("medtl/cli.py:")]
    assert not found, "function-local imports of medtl modules:\n" + "\n".join(found)


def test_import_medtl_does_not_import_torch():
    code = "import sys, medtl; print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"`import medtl` imported {proc.stdout.strip()}"
