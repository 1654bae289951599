"""Near-duplicate threshold and cost of the leakage check (``medtl.data.check``), on real data.

    python -m benchmarks.leakage thresholds DATA [DATA ...]   # cross-split pairs each threshold flags
    python -m benchmarks.leakage cost DATA --total 10000      # check time on DATA, tiled with noisy copies to N

Pairs are counted across splits, pixel-identical ones apart (they are exact duplicates, not near ones).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from medtl.data import ImageDataset, Split, load_dataset
from medtl.data.check import check_data, plot_pairs

THRESHOLDS = (0.90, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)


def thresholds(data: ImageDataset, out: Path | None) -> None:
    """Count the cross-split pairs each threshold flags; with ``out``, draw sample pairs of the bands above 0.93 to
    0.99 (``<data>-band-<t>.png``: pairs with cosine in [t, t + 0.02)) to look at."""
    report = check_data(data, min(THRESHOLDS))
    cosines = np.array([c for *_, c in report.near])
    n = sum(len(data.split(s)) for s in ("train", "val", "test"))
    print(f"{data.name}: {n} images; {len(report.exact_across)} sets of identical images across splits (apart)")
    print("| threshold | pairs flagged |\n|---|---|")
    for t in THRESHOLDS:
        print(f"| {t} | {int((cosines >= t).sum())} |")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        near = report.near
        for t in (0.93, 0.95, 0.97, 0.98, 0.99):
            band = [p for p in near if t <= p[2] < min(t + 0.02, 0.999)]
            report.exact, report.near = [], band[:: max(1, len(band) // 8)][:8]
            print(t, plot_pairs(report, data, out / f"{Path(data.name).stem}-band-{t}.png"))


def cost(data: ImageDataset, total: int) -> None:
    """Time check_data on ``data`` plus random images (smoothed noise, all distinct) up to ``total`` images."""
    pooled = Split.concat([data.split(s) for s in ("train", "val", "test")])
    extra = max(0, total - len(pooled))
    g = torch.Generator().manual_seed(0)
    c, h, w = pooled.images.shape[1:]
    noise = torch.rand(extra, c, h // 4, w // 4, generator=g)
    synthetic = torch.nn.functional.interpolate(noise, size=(h, w), mode="bilinear")
    synthetic = synthetic if pooled.images.dtype == torch.float32 else (synthetic * 255).round().to(torch.uint8)
    images = torch.cat([pooled.images, synthetic])[:total]
    labels = torch.cat([pooled.labels, torch.randint(0, data.num_classes, (extra,), generator=g)])[:total]
    order = torch.randperm(total, generator=g)
    images, labels = images[order], labels[order]
    cut = [int(total * 0.7), int(total * 0.8)]
    parts = [Split(images[a:b], labels[a:b]) for a, b in zip([0, *cut], [*cut, total])]
    mixed = ImageDataset(f"{data.name} + {extra} random", data.task, data.classes, *parts)
    check_data(mixed)  # warm-up (thread pools)
    start = time.perf_counter()
    report = check_data(mixed)
    print(f"{mixed.name}: {total} images {tuple(images.shape[1:])} {images.dtype}: check_data "
          f"{time.perf_counter() - start:.2f} s (threads {torch.get_num_threads()}); {len(report.near)} near pairs, "
          f"{len(report.exact)} exact groups")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("thresholds", "cost"))
    p.add_argument("data", nargs="+")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--total", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for spec in a.data:
        start = time.perf_counter()
        data = load_dataset(spec, image_size=a.image_size)
        print(f"loaded {spec} in {time.perf_counter() - start:.1f} s")
        thresholds(data, a.out) if a.what == "thresholds" else cost(data, a.total)


if __name__ == "__main__":
    main()
