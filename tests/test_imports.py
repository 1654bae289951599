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

import pytest

from conftest import ROOT

PACKAGE = ROOT / "medtl"
# third-party dependencies that are optional or heavy; a function may import these lazily (none is a medtl module)
OPTIONAL = {"matplotlib", "onnx", "onnxruntime", "ray", "nibabel", "pydicom", "jinja2", "peft", "mlflow",
            "tensorboardX", "fastapi", "uvicorn", "python_multipart"}


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


@pytest.mark.slow  # a fresh interpreter importing torch and medtl (seconds)
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


# The package's layers, lowest first. A module may import modules of its own unit (a top-level module or package of
# medtl) and of units in lower layers only; units in separate sets of one layer are independent (training, analysis
# and deploy never import each other). So inference code (deploy, ensembles, inference) never loads the training
# loop or the experiment runner, and plotting, labels and optional dependencies come from below, not from a sibling.
LAYERS: list[list[set[str]]] = [
    [{"medtl", "errors", "config", "formats", "optional", "provenance", "plotting", "files", "progress", "cluster"}],
    [{"data"}],
    [{"backbones"}],
    [{"model"}],
    [{"artifacts"}],
    [{"source", "rundir"}],
    [{"strategies"}],
    [{"inference"}, {"evaluation"}],
    [{"resolve"}],
    [{"training"}, {"deploy", "ensembles"}],
    [{"analysis"}],  # --cut auto's multi-exit estimator fine-tunes a network
    [{"tracking"}],  # observes runs: training's pause, the run directory, the model card's name
    [{"experiment"}],
    [{"compare"}],
    [{"report"}],
    [{"certainty"}],
    [{"search"}],
    [{"api"}],
    [{"cli", "__main__"}],
]


def imported_units(package: Path = PACKAGE) -> dict[str, set[tuple[str, str]]]:
    """For each unit, ``(imported unit, "path:line")`` of every import of another medtl unit, at any depth."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        unit = parts[1] if len(parts) > 1 else "medtl"
        package_parts = list(parts[:-1])  # the package a relative import starts from
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package_parts[:len(package_parts) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                # `from .. import x`: x is a module when it has a file or folder, else a name of the package
                targets = [module] if node.module else [
                    f"{module}.{a.name}" if any(package.parent.joinpath(*module.split("."), a.name + suffix).exists()
                                                for suffix in (".py", "")) else module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                names = target.split(".")
                if names[0] != "medtl":
                    continue
                other = names[1] if len(names) > 1 else "medtl"
                if other != unit:
                    found.setdefault(unit, set()).add((other, f"{path.relative_to(package.parent)}:{node.lineno}"))
    return found


def layer_violations(package: Path = PACKAGE) -> list[str]:
    where = {unit: (i, frozenset(group)) for i, layer in enumerate(LAYERS) for group in layer for unit in group}
    bad = []
    for unit, imports in imported_units(package).items():
        if unit not in where:
            bad.append(f"medtl.{unit} is in no layer: add it to LAYERS in tests/test_imports.py")
            continue
        level, group = where[unit]
        for other, line in sorted(imports, key=lambda t: t[1]):
            if other not in where:
                bad.append(f"{line}: imports medtl.{other}, which is in no layer")
            elif where[other][0] > level or where[other][0] == level and other not in group:
                kind = "higher" if where[other][0] > level else "sibling"
                bad.append(f"{line}: medtl.{unit} imports medtl.{other}, a {kind} layer")
    return sorted(bad)


def test_every_import_follows_the_layers():
    assert not layer_violations(), "imports against the layer order:\n" + "\n".join(layer_violations())


def test_the_layer_check_catches_an_import_of_training_from_deploy(tmp_path):
    package = tmp_path / "medtl"
    for sub in ("deploy", "training"):  # `from .. import training` names a module when it has a folder
        (package / sub).mkdir(parents=True)
    (package / "deploy" / "predict.py").write_text("from ..inference import predict\nfrom .. import training\n\n"
                                                   "def f():\n    from ..experiment import provenance\n")
    (package / "inference.py").write_text("from .data import Preprocess\nfrom .report import x\n")
    assert layer_violations(package) == [
        "medtl/deploy/predict.py:2: medtl.deploy imports medtl.training, a sibling layer",
        "medtl/deploy/predict.py:5: medtl.deploy imports medtl.experiment, a higher layer",
        "medtl/inference.py:2: medtl.inference imports medtl.report, a higher layer"]


@pytest.mark.slow  # a fresh interpreter importing torch and medtl (seconds)
def test_scoring_a_saved_model_loads_no_training_code():
    code = ("import sys, medtl.deploy.predict, medtl.ensembles; print(sorted(m for m in sys.modules if "
            "m.startswith('medtl.training') or m in ('medtl.experiment', 'medtl.compare', 'medtl.search')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_missing_extra_gives_the_same_message_everywhere(monkeypatch):
    """Every optional dependency goes through medtl.optional: the message names the feature and the extra."""
    import pytest

    from medtl.compare.ray_executor import RayExecutor
    from medtl.deploy.predict import require_onnxruntime
    from medtl.errors import ConfigError
    from medtl.optional import require
    from medtl.plotting import pyplot

    for module in ("matplotlib", "matplotlib.pyplot", "onnxruntime", "ray", "ray.tune", "nibabel"):
        monkeypatch.setitem(sys.modules, module, None)  # the import fails as if not installed
    cases = [(lambda: pyplot("the report's figures"), "the report's figures needs matplotlib", "plot"),
             (require_onnxruntime, "needs onnxruntime", "export"),
             (lambda: list(RayExecutor().map(str, [1])), "--executor ray (or choose --executor local) needs ray",
              "ray"),
             (lambda: require("nibabel", extra="3d", purpose="reading NIfTI volumes"), "NIfTI volumes needs nibabel",
              "3d")]
    for call, what, extra in cases:
        with pytest.raises(ConfigError) as e:
            call()
        assert what in str(e.value) and str(e.value).endswith(f'which is not installed: pip install "medtl[{extra}]"')
    with pytest.raises(KeyError, match="installed by the extra 'plot', not 'export'"):
        require("matplotlib", extra="export", purpose="x")


def test_only_medtl_optional_handles_import_errors():
    """A hand-written ``try: import x / except ImportError`` is how the old guards drifted into four behaviours; the
    two left are not extras (a platform module, and a separately published weights package)."""
    allowed = {"medtl/optional.py", "medtl/rundir.py", "medtl/backbones/weights.py"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if names & {"ImportError", "ModuleNotFoundError"} and where not in allowed:
                    found.append(f"{where}:{node.lineno}")
    assert not found, "use medtl.optional.require instead of catching ImportError: " + ", ".join(found)
