"""Which speed-ups pay on this machine: each one timed against its absence in interleaved rounds.

channels_last, bf16 autocast and torch.compile are timed through the real training loop (one ``Trainer.fit``
epoch per round); thread settings in fresh processes (OpenMP reads its environment once, at start); inference
without autograd on the validation-style forward pass. ``precision_metrics`` trains the default configuration
to the end in fp32 and in bf16 to show what bf16 does to the test metrics.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import Timed, interleave, ratio
from benchmarks.contenders import MedtlEpoch, fresh_models, shrink
from medtl.config import TrainConfig
from medtl.data import ImageDataset, Preprocess

WORKER = Path(__file__).with_name("worker.py")
LITE0 = "efficientnet_lite0 (default cut), 64 px"
PRECISION_IMAGES = {"resnet50": 192}  # training images per epoch (validation shrinks alike); others use all


def _fit_variants(data: ImageDataset, base: TrainConfig, variants: dict[str, dict], rounds: int,
                  threads: dict[str, int] | None = None) -> dict[str, Timed]:
    """One ``MedtlEpoch`` per variant of ``base`` (same initial weights), timed in interleaved rounds; a variant
    named in ``threads`` runs with that many torch threads."""
    contenders = {}
    for name, change in variants.items():
        cfg = replace(base, **change)
        epoch = MedtlEpoch(cfg, data, fresh_models(cfg, data, 1)[0])
        contenders[name] = with_threads(epoch, (threads or {}).get(name))
    return interleave(contenders, rounds)


def with_threads(fn: Callable, n: int | None) -> Callable:
    """``fn`` run with ``n`` torch threads (the setting is restored afterwards)."""
    if n is None:
        return fn

    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def memory_format(data: ImageDataset, rounds: int) -> list[dict]:
    base = TrainConfig(backbone="efficientnet_lite0", image_size=64, weights="none")
    t = _fit_variants(data, base, {"channels_last": {"channels_last": True}, "nchw": {"channels_last": False}}, rounds)
    return [{"option": "channels_last vs NCHW", "model": LITE0,
             "with_img_s": t["channels_last"].rate(), "without_img_s": t["nchw"].rate(),
             "speedup": ratio(t["channels_last"], t["nchw"])}]


def precision(data: ImageDataset, rounds: int, backbones: list[str]) -> list[dict]:
    """bf16 against fp32, with the default threads and with one thread: oneDNN's bf16 kernels behave very
    differently when their threads have to share cores."""
    rows, n = [], torch.get_num_threads()
    for backbone in backbones:
        part = shrink(data, PRECISION_IMAGES.get(backbone))
        base = TrainConfig(backbone=backbone, image_size=64, weights="none")
        variants = {f"{p}/{k}": {"precision": p} for p in ("bf16", "fp32") for k in (n, 1)}
        t = _fit_variants(part, base, variants, rounds, {name: int(name.split("/")[1]) for name in variants})
        for k in dict.fromkeys((n, 1)):
            rows.append({"option": f"bf16 autocast vs fp32, {k} thread(s)", "model": f"{backbone} (default cut), 64 px",
                         "with_img_s": t[f"bf16/{k}"].rate(), "without_img_s": t[f"fp32/{k}"].rate(),
                         "speedup": ratio(t[f"bf16/{k}"], t[f"fp32/{k}"])})
        if n != 1:
            rows.append({"option": f"bf16 1 thread vs fp32 {n} threads", "model": f"{backbone} (default cut), 64 px",
                         "with_img_s": t["bf16/1"].rate(), "without_img_s": t[f"fp32/{n}"].rate(),
                         "speedup": ratio(t["bf16/1"], t[f"fp32/{n}"])})
    return rows


def compile_payback(data: ImageDataset, rounds: int, epochs: int = 30) -> list[dict]:
    """Compile time (the compiled model's first epoch minus its later ones, with an empty compilation cache)
    against the per-epoch saving."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="medtl-bench-inductor-")  # a cold compile
    base = TrainConfig(backbone="efficientnet_lite0", image_size=64, weights="none")
    t = _fit_variants(data, base, {"compiled": {"compile": True}, "eager": {"compile": False}}, rounds + 1)
    first = t["compiled"].seconds[0]
    for timed in t.values():  # the first round is the compiled model's compilation (and the eager warm-up)
        timed.items, timed.seconds = timed.items[1:], timed.seconds[1:]
    steady, eager = statistics.median(t["compiled"].seconds), statistics.median(t["eager"].seconds)
    saving = eager - steady
    return [{"option": "torch.compile vs eager", "model": LITE0,
             "with_img_s": t["compiled"].rate(), "without_img_s": t["eager"].rate(),
             "speedup": ratio(t["compiled"], t["eager"]), "compile_s": first - steady,
             "break_even_epochs": (first - steady) / saving if saving > 0 else float("inf"),
             "net_s_over_run": (first - steady) - saving * epochs, "run_epochs": epochs}]


def autograd_modes(data: ImageDataset, rounds: int) -> list[dict]:
    """The validation forward pass (eval mode, batches of 256) under inference_mode, no_grad and autograd."""
    cfg = TrainConfig(backbone="efficientnet_lite0", image_size=64, weights="none")
    model = fresh_models(cfg, data, 1)[0].eval()
    x = Preprocess(64, (0.5,), (0.5,))(data.train.images).contiguous(memory_format=torch.channels_last)

    def forward(mode: Callable) -> Callable:
        def run():
            start = time.perf_counter()
            with mode():
                for i in range(0, len(x), 256):
                    model(x[i:i + 256])
            return len(x), time.perf_counter() - start, {}
        return run

    t = interleave({"inference_mode": forward(torch.inference_mode), "no_grad": forward(torch.no_grad),
                    "autograd": forward(torch.enable_grad)}, rounds)
    return [{"option": f"inference_mode vs {other}", "model": f"{LITE0}, eval forward",
             "with_img_s": t["inference_mode"].rate(), "without_img_s": t[other].rate(),
             "speedup": ratio(t["inference_mode"], t[other])} for other in ("no_grad", "autograd")]


THREAD_SETTINGS = {  # name: (torch threads, extra environment)
    "2 threads (default)": (2, {}),
    "1 thread": (1, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def threads(rounds: int, batches: int = 3, settings: list[str] | None = None) -> list[dict]:
    """Bare training steps in fresh processes, one per setting (default: all; the first is the reference) and round
    (rotating order)."""
    spec = {"kind": "bare", "backbone": "efficientnet_lite0", "image_size": 64, "batches": batches, "epochs": 1}
    names = settings or list(THREAD_SETTINGS)

    def child(name: str):
        n, extra = THREAD_SETTINGS[name]

        def run():
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            out = subprocess.run([sys.executable, str(WORKER), json.dumps({**spec, "threads": n})],
                                 env={**env, **extra}, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            return result["images"], result["wall_s"][0], {"cpu_s": result["cpu_s"][0]}
        return run

    t = interleave({name: child(name) for name in names}, rounds)
    ref = t[names[0]]
    return [{"setting": name, "img_s": t[name].rate(), "vs_default": ratio(t[name], ref),
             "cpu_s_per_img": statistics.median(c / n for c, n in zip(t[name].extras["cpu_s"], t[name].items))}
            for name in names]


def precision_metrics(seeds: list[int], epochs: int = 30, options: dict | None = None) -> list[dict]:
    """The default configuration (EfficientNet-Lite0, ImageNet weights, default cut, 64 px; other ``options`` of
    ``medtl.train`` when given) trained to the end in fp32 and in bf16, each in its own process; test metrics per
    seed."""
    rows = []
    out = tempfile.mkdtemp(prefix="medtl-bench-bf16-")
    for seed in seeds:
        for prec in ("fp32", "bf16"):
            spec = {"kind": "train", "options": {"seed": seed, "precision": prec, "epochs": epochs, "out": out,
                                                 "threads": torch.get_num_threads(), **(options or {})}}
            res = subprocess.run([sys.executable, str(WORKER), json.dumps(spec)], capture_output=True, text=True,
                                 check=True).stdout
            result = json.loads(res.strip().splitlines()[-1])
            rows.append({"seed": seed, "precision": prec, **result})
    return rows
