"""What every benchmark shares: the machine description, the load on it, and interleaved timing.

The machine may be shared, so no absolute figure is trusted on its own: contenders are timed in rounds
(A B C, B C A, C A B, ...), each round close in time to the others, and a ratio is the median of the per-round
ratios. The load average is sampled before every round and reported next to the figures.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

LOAD: list[float] = []  # 1-minute load average, sampled before every round of every benchmark


def load_note() -> str:
    """The load seen during the run, e.g. ``load 2.1-3.4 (median 2.8) on 2 cores``."""
    if not LOAD:
        return "load not sampled"
    return (f"1-min load {min(LOAD):.1f}-{max(LOAD):.1f} (median {statistics.median(LOAD):.1f}) "
            f"on {os.cpu_count()} cores")


def machine() -> dict:
    """CPU model, cores, library versions and the accelerator, as they appear in the results."""
    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
        flags = next((line for line in lscpu.splitlines() if line.startswith("Flags")), "")
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    except (OSError, subprocess.CalledProcessError, StopIteration):
        isa = []
    import torchvision

    return {
        "cpu": model, "cores": os.cpu_count(), "isa": isa, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_at_start": os.getloadavg()[0],
    }


@dataclass
class Timed:
    """One contender's measurements, once per round: ``items`` processed in ``seconds`` of wall time and ``cpu``
    seconds of processor time (this process and its finished children), plus named extras."""

    items: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    extras: dict[str, list[float]] = field(default_factory=dict)

    def rates(self) -> list[float]:
        return [n / s for n, s in zip(self.items, self.seconds)]

    def rate(self) -> float:
        """Median items per second over the rounds."""
        return statistics.median(self.rates())

    def cpu_per_item(self) -> float:
        """Median processor seconds per item: less sensitive than wall time to other users of the machine."""
        return statistics.median(c / n for c, n in zip(self.cpu, self.items))


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def interleave(contenders: dict[str, Callable[[], tuple[float, float, dict]]], rounds: int) -> dict[str, Timed]:
    """Run every contender once per round, rotating the order; each call returns (items, seconds, extras)."""
    names = list(contenders)
    out = {name: Timed() for name in names}
    for r in range(rounds):
        LOAD.append(os.getloadavg()[0])
        for name in names[r % len(names):] + names[:r % len(names)]:
            cpu = cpu_seconds()
            items, seconds, extras = contenders[name]()
            out[name].cpu.append(cpu_seconds() - cpu)
            out[name].items.append(items)
            out[name].seconds.append(seconds)
            for key, value in extras.items():
                out[name].extras.setdefault(key, []).append(value)
    return out


def ratio(a: Timed, b: Timed) -> float:
    """Median over rounds of a's rate / b's rate (each round's pair was measured close together)."""
    return statistics.median(x / y for x, y in zip(a.rates(), b.rates()))
