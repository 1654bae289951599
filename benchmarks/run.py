"""Every benchmark in one command: ``python benchmarks/run.py [--quick] [--out FILE] [--only SECTION,...]``.

See benchmarks/README.md for what each section measures and how to read it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("throughput", "fastpath", "threads", "inference", "memory", "bf16_metrics")
QUICK_SECTIONS = ("throughput", "fastpath", "threads")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="EfficientNet-Lite0 at 64 px only: the headline ratios, channels_last, bf16, threads (~15 min "
                        "on a busy 2-core machine)")
    p.add_argument("--smoke", action="store_true",
                   help="every code path of the chosen sections once, at toy size (16 training images, one round, "
                        "one epoch per call): proves the harness runs (tests/test_benchmarks.py); its figures mean "
                        "nothing")
    p.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison (median reported)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE", "unset"),
                   help="OpenMP waiting; PASSIVE (default) keeps a loaded machine's figures meaningful, see README")
    p.add_argument("--seeds", default="0,1,2", help="bf16_metrics: seeds of the full-length fp32/bf16 runs")
    p.add_argument("--out", type=Path, help="write results to FILE.json / FILE.md (both without a suffix)")
    return p.parse_args(argv)


def with_omp_policy(policy: str) -> None:
    """Re-run this script with OMP_WAIT_POLICY as asked: OpenMP reads it once, when torch loads."""
    want = None if policy == "unset" else policy
    if os.environ.get("OMP_WAIT_POLICY") != want:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  env if want is None else {**env, "OMP_WAIT_POLICY": want})


def main(argv: list[str]) -> None:
    args = parse(argv)
    with_omp_policy(args.omp_wait_policy)
    sys.path.insert(0, str(ROOT))
    import warnings

    import torch

    import medtl
    from benchmarks import common, fastpath, inference, memory, report, throughput

    warnings.simplefilter("ignore")  # chance-level warnings of one-epoch random-weight runs are expected
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = args.only.split(",") if args.only else list(QUICK_SECTIONS if args.quick else SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    data = medtl.load_dataset("breastmnist")
    r = args.rounds
    if args.smoke:
        return smoke(args, data, chosen)
    info = {**common.machine(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}
    print(info, flush=True)
    jobs = {
        "throughput": lambda: throughput.run(data, throughput.QUICK if args.quick else throughput.FULL, r),
        "fastpath": lambda: (fastpath.memory_format(data, r)
                             + fastpath.precision(data, r,
                                                  ["efficientnet_lite0"] + ([] if args.quick else ["resnet50"]))
                             + ([] if args.quick
                                else fastpath.compile_payback(data, r) + fastpath.autograd_modes(data, r))),
        "threads": lambda: fastpath.threads(r),
        "inference": lambda: inference.run(r, {"resnet50": ["layer3.3"]} if args.quick else inference.MODELS),
        "memory": lambda: memory.run(data, list(memory.RUNS)[:1 if args.quick else None], torch.get_num_threads()),
        "bf16_metrics": lambda: fastpath.precision_metrics([int(s) for s in args.seeds.split(",")]),
    }
    start = time.perf_counter()
    results = {"machine": info, "command": " ".join(["python benchmarks/run.py", *argv]), "sections": {}}
    for name in chosen:
        print(f"== {name}", flush=True)
        rows = results["sections"][name] = jobs[name]()
        print(report.table(name, rows), f"\n({common.load_note()})", flush=True)
        results.update(load=common.load_note(), seconds=time.perf_counter() - start)
        if args.out:  # after every section, so a long run that dies keeps what it measured
            written = report.write(results, args.out)
    if args.out:
        print("wrote", *written)


def smoke(args: argparse.Namespace, data, chosen: list[str]) -> None:
    """Each chosen section once at toy size, through the same functions as a real run; rows are checked, not timed."""
    import json

    from benchmarks import common, contenders, fastpath, inference, memory, throughput

    contenders.MedtlEpoch.EPOCHS = 1
    tiny = contenders.shrink(data, 16)
    jobs = {
        "throughput": lambda: throughput.run(tiny, [("resnet18", 28)], 1),
        "fastpath": lambda: (fastpath.memory_format(tiny, 1) + fastpath.precision(tiny, 1, ["resnet18"])
                             + fastpath.autograd_modes(tiny, 1)),
        "threads": lambda: fastpath.threads(1, batches=1, settings=list(fastpath.THREAD_SETTINGS)[:2]),
        "inference": lambda: inference.run(1, {"resnet18": ["layer1"]}, repeats_b1=1, repeats_b64=1),
        "memory": lambda: memory.run(data, [memory.SMOKE], 1),
        "bf16_metrics": lambda: fastpath.precision_metrics([0], epochs=1, options=memory.RUNS[memory.SMOKE][0]),
    }
    results = {name: jobs[name]() for name in chosen}
    empty = [name for name, rows in results.items() if not rows]
    print(json.dumps({"sections": {name: len(rows) for name, rows in results.items()}, "empty": empty,
                      "load": common.load_note()}))
    if empty:
        sys.exit(f"section(s) {', '.join(empty)} returned no rows")


if __name__ == "__main__":
    main(sys.argv[1:])
