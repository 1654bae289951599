"""The benchmark harness runs: every section once at toy size (``benchmarks/run.py --smoke``), untimed. Its figures
are not checked (they belong in benchmarks/results/); this only keeps the harness from rotting between releases."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

SECTIONS = ("throughput", "fastpath", "threads", "inference", "memory", "bf16_metrics")


@pytest.mark.slow
def test_every_benchmark_section_runs_at_toy_size():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--smoke", "--threads", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["sections"]) == set(SECTIONS)
    assert all(n > 0 for n in result["sections"].values()), result


def test_the_harness_knows_the_sections_it_is_tested_on():
    sys.path.insert(0, str(ROOT))
    from benchmarks import run

    assert run.SECTIONS == SECTIONS
    assert run.parse(["--smoke"]).smoke
