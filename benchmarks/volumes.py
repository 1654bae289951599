"""3D training throughput: medtl's loop (``Trainer.fit``: batched 3D augmentation with one ``grid_sample``, the step,
validation, the checkpoint) against the bare forward + backward + AdamW step of the same 3D model on pre-staged,
pre-normalised volumes, on AdrenalMNIST3D at 64³ (``adrenalmnist3d_64`` from ``--data-root``); and the peak resident
memory of the process (the data set, both models and their steps).

``python -m benchmarks.volumes --data-root ../shared/data/medmnist [--volume acs] [--train 64] [--rounds 3]``
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys

import torch

from benchmarks.common import interleave, machine, ratio
from benchmarks.contenders import BareEpoch, MedtlEpoch, fresh_models, shrink
from medtl.config import VOLUME_MODES, TrainConfig
from medtl.data import load_dataset


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True, help="folder holding adrenalmnist3d_64.npz")
    p.add_argument("--size", type=int, default=64, help="volume side (default 64)")
    p.add_argument("--volume", default="acs", choices=VOLUME_MODES)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--train", type=int, default=64, help="training volumes per epoch (validation shrinks alike)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of medtl's loop per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str]) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    data = shrink(load_dataset(f"adrenalmnist3d_{args.size}", root=args.data_root, download=False), args.train)
    cfg = TrainConfig(backbone=args.backbone, image_size=args.size, weights="none", volume=args.volume,
                      channels_last=False, batch_size=32)
    epoch = type("VolumeEpoch", (MedtlEpoch,), {"EPOCHS": args.epochs})
    medtl_model, bare_model = fresh_models(cfg, data, 2)
    t = interleave({"medtl": epoch(cfg, data, medtl_model), "bare": BareEpoch(cfg, data, bare_model)}, args.rounds)
    medtl, bare = t["medtl"], t["bare"]
    no_val = [s - v for s, v in zip(medtl.seconds, medtl.extras["validation_s"])]
    row = {
        "backbone": args.backbone, "volume": args.volume, "size": args.size, "train_volumes": len(data.train),
        "val_volumes": len(data.val), "threads": args.threads, "rounds": args.rounds,
        "medtl_vol_s": medtl.rate(), "bare_vol_s": bare.rate(), "medtl_vs_bare": ratio(medtl, bare),
        "medtl_no_val_vs_bare": statistics.median((n / s) / b for n, s, b in zip(medtl.items, no_val, bare.rates())),
        "medtl_vs_bare_cpu": bare.cpu_per_item() / medtl.cpu_per_item(),
        "medtl_vs_bare_rounds": [m / b for m, b in zip(medtl.rates(), bare.rates())],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": machine(),
    }
    print(json.dumps(row, indent=1))
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
