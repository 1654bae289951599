"""Peak resident memory of a real ``medtl.train`` run, each in a fresh process (``ru_maxrss``).

224 px runs train on a shrunk copy of BreastMNIST (an ``.npz`` in MedMNIST layout): peak memory is set by the
batch, not by the number of batches.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import LOAD
from benchmarks.contenders import shrink
from medtl.data import ImageDataset

WORKER = Path(__file__).with_name("worker.py")

RUNS = {  # name: (medtl.train options, training images; None = all)
    "default (make demo): efficientnet_lite0 ImageNet, default cut, 64 px": ({}, None),
    "resnet50 default cut (layer3), 64 px": ({"backbone": "resnet50", "weights": "none"}, None),
    "efficientnet_lite0 default cut, 224 px": ({"image_size": 224, "weights": "none"}, 128),
    "resnet50 default cut (layer3), 224 px": ({"backbone": "resnet50", "image_size": 224, "weights": "none"}, 64),
}
SMOKE = "smoke: resnet18 random weights, layer1, 28 px"  # run.py --smoke only
RUNS[SMOKE] = ({"backbone": "resnet18", "weights": "none", "cut": "layer1", "image_size": 28, "bootstrap": 0,
                "batch_size": 8}, 16)


def write_npz(data: ImageDataset, path: Path) -> Path:
    """``data`` as a MedMNIST-layout ``.npz`` (N, H, W) uint8 images and (N, 1) labels."""
    arrays = {}
    for split in ("train", "val", "test"):
        part = data.split(split)
        arrays[f"{split}_images"] = part.images[:, 0].numpy()
        arrays[f"{split}_labels"] = part.labels.numpy()[:, None]
    np.savez(path, **arrays)
    return path


def run(data: ImageDataset, names: list[str], threads: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="medtl-bench-mem-") as tmp:
        for name in names:
            LOAD.append(os.getloadavg()[0])
            options, n_train = RUNS[name]
            if n_train is not None:
                path = write_npz(shrink(data, n_train), Path(tmp) / f"breastmnist{n_train}.npz")
                options = {**options, "data": str(path)}
            spec = {"kind": "train", "options": {"epochs": 1, "out": tmp, "threads": threads, **options}}
            out = subprocess.run([sys.executable, str(WORKER), json.dumps(spec)], capture_output=True, text=True,
                                 check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rows.append({"run": name, "train_images": n_train or len(data.train),
                         "rss_before_train_mb": result["rss_before_train_mb"], "peak_rss_mb": result["peak_rss_mb"]})
    return rows
