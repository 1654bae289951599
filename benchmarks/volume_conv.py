"""The 3D training step with grouped (depthwise) kernels run on channels_last_3d inputs (medtl's default) against the
same step in the default memory layout: EfficientNet-Lite0 at its default cut, random weights, AdrenalMNIST3D-sized
batches (32 volumes of 28³, one channel), forward + backward + AdamW, interleaved rounds, median per-round ratio.

``python -m benchmarks.volume_conv [--volume acs] [--size 28] [--rounds 5] [--out FILE.json]``
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import machine
from medtl.backbones.volume import VolumeConv
from medtl.config import VOLUME_MODES, TrainConfig
from medtl.experiment import make_strategy


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters())
    seconds = []
    for _ in range(steps + 1):
        began = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds[1:])


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volume", default="acs", choices=VOLUME_MODES)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the result (with the machine) to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    strategy = make_strategy(TrainConfig(strategy="truncated"))
    model = strategy.build("efficientnet_lite0", 2, weights=None, in_chans=1, image_size=args.size, head="avg",
                           classes=["a", "b"], task="multiclass", volume=args.volume)
    x = torch.randn(args.batch, 1, args.size, args.size, args.size)
    y = torch.randint(0, 2, (args.batch,))
    rows = []
    for _ in range(args.rounds):
        row = {}
        for layout in (False, True):
            VolumeConv.grouped_channels_last = layout
            row["channels_last_3d" if layout else "default"] = step_seconds(model, x, y, 3)
        rows.append(row)
    VolumeConv.grouped_channels_last = True
    result = {"machine": machine(), "args": vars(args), "rounds": rows,
              "speedup": statistics.median(r["default"] / r["channels_last_3d"] for r in rows)}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
