"""A benchmark step that needs a process of its own (its own thread settings, or its own peak memory).

``python benchmarks/worker.py '{"kind": "bare", ...}'`` prints one JSON line:

- ``bare``: times bare-step epochs of a model (``backbone``, ``image_size``, ``batches``, ``epochs``) after a
  warm-up step, with ``threads`` torch threads (the environment, e.g. ``OMP_WAIT_POLICY``, is the caller's);
- ``train``: runs ``medtl.train(**options)`` and reports the peak resident memory of this process (children
  excluded) and the peak before training (torch, medtl and the data loaded).
"""
from __future__ import annotations

import json
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far. Linux keeps ``getrusage``'s ``ru_maxrss`` across exec, so a
    worker started from a large benchmark process would report its parent's size; VmHWM starts afresh."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: an upper bound


def bare(spec: dict) -> dict:
    import torch

    import medtl
    from benchmarks.contenders import BareEpoch, fresh_models
    from medtl.config import TrainConfig

    torch.set_num_threads(spec["threads"])
    data = medtl.load_dataset("breastmnist")
    cfg = TrainConfig(backbone=spec["backbone"], image_size=spec["image_size"], weights="none")
    epoch = BareEpoch(cfg, data, fresh_models(cfg, data, 1)[0])
    epoch.batches = epoch.batches[:spec["batches"]]
    x, y = epoch.batches[0]
    torch.nn.functional.cross_entropy(epoch.model(x), y).backward()  # warm-up: oneDNN primitives, allocator
    walls, cpus = [], []
    for _ in range(spec["epochs"]):
        cpu = time.process_time()
        images, wall, _ = epoch()
        walls.append(wall)
        cpus.append(time.process_time() - cpu)
    return {"images": images, "wall_s": walls, "cpu_s": cpus}


def train(spec: dict) -> dict:
    import medtl

    medtl.load_dataset(spec["options"].get("data", "breastmnist"))
    before = peak_rss_mb()
    warnings.simplefilter("ignore")
    metrics = medtl.train(verbose=False, **spec["options"]).metrics
    return {"rss_before_train_mb": before, "peak_rss_mb": peak_rss_mb(), "train_seconds": metrics["train_seconds"],
            **{k: v for k, v in metrics.items() if k in ("test_auroc", "test_auprc", "test_accuracy", "best_epoch")}}


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps({"bare": bare, "train": train}[job["kind"]](job)))
