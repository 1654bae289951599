"""What several test files share: the repository paths, the fastest training options, small data writers, and a
wait-for-condition helper (tests wait on something observable, never on a fixed sleep).

Plain helpers are imported by the test files (``from conftest import FAST_ARGS, save``: pytest puts ``tests/`` on
``sys.path``); fixtures are found by pytest.

Markers: ``slow`` is every test that trains a model (even for one epoch), starts a fresh medtl process, builds the
docs site or builds the largest backbones at every cut (``make test-fast`` runs the others).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]  # the repository (a worktree or CI's fresh clone)
SHARED = ROOT.parent / "shared"  # data shared beside the clone (CI puts a copy there)
IN_CI = bool(os.environ.get("CI"))

# The fastest training that still runs every step: EfficientNet-Lite0 cut at blocks.2, 32 px, one epoch, no report.
FAST = dict(backbone="efficientnet_lite0", cut="blocks.2", image_size=32, epochs=1, threads=1, report=False)


def cli_args(**options) -> list[str]:
    """``medtl train`` flags for keyword options (``image_size=32`` -> ``--image-size 32``)."""
    return [arg for key, value in options.items()
            for arg in ((f"--{key.replace('_', '-')}" if value is not False else f"--no-{key.replace('_', '-')}",)
                        + (() if isinstance(value, bool) else (str(value),)))]


FAST_ARGS = [*cli_args(**FAST), "--quiet"]  # the same as flags


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory) -> Path:
    """One run of :data:`FAST` on the built-in BreastMNIST, trained once for every test module that only reads
    a finished run (predict, export, ensembles, same-seed reproducibility). Tests must not write into it."""
    import medtl

    return medtl.train(out=str(tmp_path_factory.mktemp("fast-run")), verbose=False, **FAST).run_dir


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write ``array`` as an image file (format from the suffix; converted to PIL ``mode`` if given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


def noise(seed: int, shape: tuple[int, ...] = (12, 12), dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


def tiny_npz(path: Path, constant: bool = False, square: bool = True) -> Path:
    """A MedMNIST-layout ``.npz`` of 16/8/8 random 28 px images, labels alternating 0/1. Class 1 has a bright
    square if ``square``; with ``constant`` every image is the same mid grey (nothing to learn)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        labels = np.arange(n) % 2
        images = np.full((n, 28, 28), 128, np.uint8) if constant else rng.integers(0, 256, (n, 28, 28), np.uint8)
        if square and not constant:
            images[labels == 1, 8:20, 8:20] = 255
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    np.savez(path, **arrays)
    return path


T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 300, proc: subprocess.Popen | None = None,
             output: Callable[[], str] | None = None, poll: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``
    seconds, or as soon as ``proc`` (a process expected to produce it) has exited, showing ``output()`` (default:
    the process's stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            found = condition()  # it may have appeared just before the exit
            if found:
                return found
            err = output() if output else proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"{what} never happened: the process exited with status {proc.returncode}: {err}")
        time.sleep(poll)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s")


def medtl_process(*args: str, **popen) -> subprocess.Popen:
    """``python -m medtl ARGS`` in another process, from the repository root, with text pipes."""
    return subprocess.Popen([sys.executable, "-m", "medtl", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


class FakeClock:
    """Stands in for the ``time`` module of one medtl module: ``perf_counter``/``monotonic`` return 100, 100 + step,
    100 + 2 step, ... and every value handed out is kept in ``readings``; anything else is the real ``time``."""

    def __init__(self, step: float):
        self.step, self.readings = step, []

    def perf_counter(self) -> float:
        self.readings.append(100.0 + self.step * len(self.readings))
        return self.readings[-1]

    monotonic = perf_counter

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeClock]:
    """``fake_clock(module, step)``: replace ``module.time`` by a :class:`FakeClock` for this test, so that a
    duration the module reports can be checked against the exact readings it took."""

    def install(module, step: float = 0.0025) -> FakeClock:
        clock = FakeClock(step)
        monkeypatch.setattr(module, "time", clock)
        return clock

    return install


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core), each worker gets its share of the cores for
    torch's intra-op threads, so that two workers on two cores do not run four busy threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process training sets torch's thread count; give every later test the count it had before."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class OutputWatcher:
    """Collects what a process writes to one of its pipes (in a thread, so the pipe never fills up), for tests that
    wait until a given text has been printed; progress bars that redraw with ``\\r`` count too."""

    def __init__(self, stream):
        import threading

        self.chunks: list[str] = []
        self._fd = stream.fileno()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while chunk := os.read(self._fd, 4096):
            self.chunks.append(chunk.decode(errors="replace"))

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def close(self) -> str:
        """Everything the process wrote (call once it has exited)."""
        self._thread.join(timeout=10)
        return self.text
