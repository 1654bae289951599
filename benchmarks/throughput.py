"""Training throughput: medtl's loop against the bare-step ceiling and the conventional DataLoader/PIL loop (as the
paper's code runs it, and with medtl's channels_last), on BreastMNIST (28 px originals, resized by each pipeline),
for each backbone at its default cut and each size."""
from __future__ import annotations

import statistics
from dataclasses import replace

from benchmarks.common import interleave, ratio
from benchmarks.contenders import BareEpoch, ConventionalEpoch, MedtlEpoch, fresh_models, shrink
from medtl.resolve import make_strategy
from medtl.config import TrainConfig
from medtl.data import ImageDataset

FULL = [(b, s) for b in ("efficientnet_lite0", "resnet18", "resnet50") for s in (28, 64, 224)]
QUICK = [("efficientnet_lite0", 64)]
TRAIN_IMAGES = {224: 64}  # per size: training images per epoch (validation shrinks alike); others use all 546


def run(data: ImageDataset, grid: list[tuple[str, int]], rounds: int) -> list[dict]:
    rows = []
    for backbone, size in grid:
        cfg = TrainConfig(backbone=backbone, image_size=size, weights="none")
        part = shrink(data, TRAIN_IMAGES.get(size))
        models = fresh_models(cfg, part, 3)
        as_is = replace(cfg, channels_last=False)  # the paper's and MedMNIST's code leave the memory format alone
        t = interleave({"medtl": MedtlEpoch(cfg, part, models[0]), "bare": BareEpoch(cfg, part, models[1]),
                        "conventional": ConventionalEpoch(as_is, part, fresh_models(as_is, part, 1)[0]),
                        "conventional_cl": ConventionalEpoch(cfg, part, models[2])}, rounds)
        medtl, bare, conv, conv_cl = t["medtl"], t["bare"], t["conventional"], t["conventional_cl"]
        # medtl's training alone: its epoch minus the validation it runs (checkpoint writing stays in)
        no_val = [s - v for s, v in zip(medtl.seconds, medtl.extras["validation_s"])]
        rows.append({
            "backbone": backbone, "cut": make_strategy(cfg).cut, "size": size, "train_images": len(part.train),
            "val_images": len(part.val),
            "medtl_img_s": medtl.rate(),
            "medtl_no_val_img_s": statistics.median(n / s for n, s in zip(medtl.items, no_val)),
            "bare_img_s": bare.rate(), "conventional_img_s": conv.rate(), "conventional_cl_img_s": conv_cl.rate(),
            "conventional_cl_train_pass_img_s": statistics.median(
                n / s for n, s in zip(conv_cl.items, conv_cl.extras["train_pass_s"])),
            "medtl_vs_bare": ratio(medtl, bare),
            "medtl_no_val_vs_bare": statistics.median(
                (n / s) / b for n, s, b in zip(medtl.items, no_val, bare.rates())),
            "medtl_vs_conventional": ratio(medtl, conv), "medtl_vs_conventional_cl": ratio(medtl, conv_cl),
            "medtl_vs_bare_cpu": bare.cpu_per_item() / medtl.cpu_per_item(),
            "medtl_vs_conventional_cpu": conv.cpu_per_item() / medtl.cpu_per_item(),
            "validation_share": statistics.median(v / s for v, s in zip(medtl.extras["validation_s"], medtl.seconds)),
            "checkpoint_share": statistics.median(c / s for c, s in zip(medtl.extras["checkpoint_s"], medtl.seconds)),
            "medtl_vs_bare_rounds": [m / b for m, b in zip(medtl.rates(), bare.rates())],
            "medtl_vs_conventional_rounds": [m / c for m, c in zip(medtl.rates(), conv.rates())],
            "img_s_rounds": {name: timed.rates() for name, timed in t.items()},
        })
    return rows
