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


def test_beyond_chooses_each_strategys_rate_on_validation_only():
    sys.path.insert(0, str(ROOT))
    from benchmarks.beyond import choose

    def run(strategy, lr, seed, val, test):
        return {"run": f"{strategy}-{lr}-{seed}", "strategy": strategy, "cut": None, "level": None, "repeat": seed,
                "lr": lr, "val_auprc": val, "val_auroc": val, "test_auroc": test, "test_auprc": test,
                "test_accuracy": test, "latency_ms": 1.0, "parameters": 10, "trainable_parameters": 10, "macs": 1,
                "stored_bytes": 40}

    records = [run("full", "1e-3", s, 0.9, 0.7) for s in (0, 1)] + [run("full", "1e-2", s, 0.8, 0.99) for s in (0, 1)]
    records += [run("lora", "1e-3", 0, 0.7, 0.9), run("lora", "1e-2", 0, 0.95, 0.6)]
    chosen, tried = choose(records)
    assert {(r["strategy"], r["lr"]) for r in chosen} == {("full", "1e-3"), ("lora", "1e-2")}  # test never looked at
    assert len(chosen) == 3 and len(tried) == 4 and {t["runs"] for t in tried} == {1, 2}
