"""Inference cost of truncated models against the full model, next to their MACs ratio (the paper's
compactness claim): latency at batch 1 and throughput at batch 64, 3-channel 224 px input, eval mode without
autograd, channels_last (as ``medtl.inference.predict`` runs them). Random weights: speed does not depend on them.
"""
from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import interleave, ratio
from medtl.evaluation import count_macs
from medtl.model import build_classifier

MODELS = {"resnet50": ["layer2", "layer3.3", "layer3"], "efficientnet_lite0": ["blocks.3", "blocks.4", "blocks.5"],
          "resnet18": ["layer3"]}
SIZE, CHANNELS = 224, 3


def _runner(model: torch.nn.Module, batch: int, repeats: int):
    return timed_forward(model, torch.randn(batch, CHANNELS, SIZE, SIZE), repeats)


def timed_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int):
    """A contender for :func:`benchmarks.common.interleave`: the median time of ``repeats`` eval forward passes of
    ``x`` (channels_last, no autograd), after one warm-up pass."""
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)  # warm-up: oneDNN primitives, allocator

    def run():
        with torch.inference_mode():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        return len(x), statistics.median(times), {}
    return run


def run(rounds: int, models: dict[str, list[str]] = MODELS, repeats_b1: int = 10, repeats_b64: int = 1) -> list[dict]:
    rows = []
    for backbone, cuts in models.items():
        built = {cut: build_classifier(backbone, 2, cut=cut, weights=None, in_chans=CHANNELS, image_size=SIZE)
                 for cut in [*cuts, None]}
        names = {cut: cut or "full" for cut in built}
        for model in built.values():
            model.eval().to(memory_format=torch.channels_last)
        b1 = interleave({names[c]: _runner(m, 1, repeats_b1) for c, m in built.items()}, rounds)
        b64 = interleave({names[c]: _runner(m, 64, repeats_b64) for c, m in built.items()}, rounds)
        macs = {cut: count_macs(model, CHANNELS, SIZE) for cut, model in built.items()}
        for cut, model in built.items():
            name = names[cut]
            rows.append({
                "backbone": backbone, "cut": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                "gmacs": macs[cut] / 1e9, "macs_ratio": macs[cut] / macs[None],
                "latency_b1_ms": 1e3 / b1[name].rate(), "latency_ratio": ratio(b1["full"], b1[name]),
                "throughput_b64_img_s": b64[name].rate(), "throughput_ratio": ratio(b64[name], b64["full"]),
            })
    return rows
