"""medtl works as an installed package, away from its checkout: the wheel carries the built-in data, the report
template and ``py.typed``, and ``medtl train`` runs from it in a fresh virtual environment in another directory.

The fresh environment gets only the wheel (``--no-deps``); the dependencies (torch alone is gigabytes) are made
visible by a ``.pth`` line naming this interpreter's site-packages, which adds that directory but runs none of its own
``.pth`` files, so medtl's editable install there stays inert and only the wheel's copy can be imported.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

import medtl

pytestmark = pytest.mark.slow  # it builds, installs and trains (a minute or more)


def build_wheel(out: Path, work: Path) -> Path:
    """``python -m build --wheel`` of a clean copy of the sources (a build in the checkout would reuse its ``build/``,
    which can hold files deleted since), without build isolation: it must work offline."""
    pytest.importorskip("build", reason="the `build` package (in the dev extra) builds the wheel")
    src = work / "src"
    shutil.copytree(ROOT / "medtl", src / "medtl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("medtl-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel alone; returns its ``bin`` directory."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "medtl_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return path / "bin"


def test_the_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path / "dist", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("medtl/py.typed", "medtl/data/builtin/breastmnist.npz", "medtl/data/builtin/adrenalmnist3d.npz",
                   "medtl/report/template.html.j2"):
        assert needed in names
    assert wheel.name.startswith(f"medtl-{medtl.__version__}-")  # the wheel's version is medtl.__version__

    bin_dir = fresh_venv(tmp_path / "venv", wheel)
    away = tmp_path / "elsewhere"  # the working directory: nothing of the checkout in it or above it
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=away, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where, installed = run(str(bin_dir / "python"), "-c", "import importlib.metadata as m, medtl; "
                           "print(medtl.__file__); print(m.version('medtl'))").split()
    assert Path(where).is_relative_to(tmp_path / "venv") and not Path(where).is_relative_to(ROOT)
    assert installed == medtl.__version__
    assert run(str(bin_dir / "medtl"), "--version").strip() == f"medtl {medtl.__version__}"

    run(str(bin_dir / "medtl"), "train", "--epochs", "1", "--threads", "1", "--out", str(away / "runs"), "--quiet")
    (run_dir,) = (away / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test_auroc"] <= 1 and metrics["epochs_run"] == 1
    assert (run_dir / "report.html").stat().st_size > 0  # rendered from the wheel's template
