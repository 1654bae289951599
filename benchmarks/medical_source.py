"""Chest-X-ray-pretrained against ImageNet-pretrained TruncatedTL on BreastMNIST (``--weights RUN_DIR``), and the
ensembles of each group of seeds (``medtl ensemble``).

``python benchmarks/medical_source.py --out runs/medical-source`` trains, one thread each, unless already there:

1. the source: ``medtl train --data ../shared/data/chest_xray_kermany --image-size 64 --epochs 3`` (Lite0 cut at the
   default ``blocks.3``, ImageNet-pretrained; validation drawn from train, seed 0);
2. ``medtl train --seed S`` (the BreastMNIST default, ImageNet weights) and ``medtl train --seed S --weights SOURCE``
   for every seed;
3. ``medtl ensemble`` of each group's seeds.

It prints per-seed test and validation AUROC, a paired DeLong test of the two sources on each seed's test images
(combined over seeds by the mean z, as ``medtl compare`` does), the ensembles' metrics, and the batch-1 CPU latency of
each ensemble next to one full Lite0 model, measured interleaved in this process (medians of rounds), since on a
shared machine the latencies recorded at different times are not comparable.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import medtl  # noqa: E402
from medtl.compare.significance import read_predictions  # noqa: E402
from medtl.evaluation import latency_ms  # noqa: E402
from medtl.evaluation.delong import delong_test  # noqa: E402

CHEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray_kermany"


def medtl_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "medtl", *args, "--threads", "1"], check=True)


def run_dir(out: Path, name: str) -> Path | None:
    found = sorted(p for p in out.glob(f"*-{name}") if (p / "metrics.json").is_file())
    return found[-1] if found else None


def train(out: Path, name: str, *args: str) -> Path:
    if run_dir(out, name) is None:
        medtl_cli("train", *args, "--quiet", "--no-report", "--out", str(out), "--name", name)
    return run_dir(out, name)


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/medical-source"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--chest", type=Path, default=CHEST)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    source = train(args.out, "cxr-source", "--data", str(args.chest), "--image-size", "64", "--epochs", "3")
    runs = {"ImageNet": [train(args.out, f"bm-imagenet-s{s}", "--seed", str(s)) for s in seeds],
            "chest X-ray run": [train(args.out, f"bm-cxr-s{s}", "--seed", str(s), "--weights", str(source))
                                for s in seeds]}
    m = json.loads((source / "metrics.json").read_text())
    print(f"source {source.name}: chest X-ray test AUROC {m['test_auroc']:.4f}, accuracy {m['test_accuracy']:.4f}, "
          f"{m['train_seconds']:.0f} s training")
    print("| pretrained on | test AUROC | test AUPRC | test accuracy | validation AUROC | per seed (test AUROC) |\n"
          "|---|---|---|---|---|---|")
    metrics = {k: [json.loads((r / "metrics.json").read_text()) for r in v] for k, v in runs.items()}
    for k, ms in metrics.items():
        print(f"| {k} | " + " | ".join(spread([x[f"{s}_{key}"] for x in ms]) for s, key in (
            ("test", "auroc"), ("test", "auprc"), ("test", "accuracy"), ("val", "auroc"))) +
              f" | {', '.join(format(x['test_auroc'], '.3f') for x in ms)} |")
    zs = []
    for s, a, b in zip(seeds, runs["chest X-ray run"], runs["ImageNet"]):
        labels, prob_a, task = read_predictions(a)
        test = delong_test(labels, prob_a, read_predictions(b)[1], task)
        zs.append(test.z)
        print(f"seed {s}: chest X-ray − ImageNet test AUROC {test.difference:+.4f}, DeLong z {test.z:.2f}, "
              f"p {test.p:.3f}")
    z = float(np.mean(zs))
    print(f"combined (mean z over seeds): z {z:.2f}, p {2 * norm.sf(abs(z)):.3f}")
    ensembles = {}
    for k, members in runs.items():
        out = args.out / f"ensemble-{'cxr' if k.startswith('chest') else 'imagenet'}"
        if not (out / "metrics.json").is_file():
            medtl_cli("ensemble", *map(str, members), "--out", str(out), "--no-report")
        e = json.loads((out / "metrics.json").read_text())
        ensembles[k] = members
        print(f"ensemble of the {k} seeds: test AUROC {e['test_auroc']:.4f} (95% CI {e['test_auroc_ci'][0]:.3f}–"
              f"{e['test_auroc_ci'][1]:.3f}), AUPRC {e['test_auprc']:.4f}, accuracy {e['test_accuracy']:.4f}, "
              f"validation AUROC {e['val_auroc']:.4f}; {e['parameters']:,} parameters, {e['macs'] / 1e6:.1f}M MACs")
    torch.set_num_threads(1)
    full = medtl.build_classifier("efficientnet_lite0", 2, weights=None, in_chans=1, image_size=64).eval()
    models = {k: [medtl.load_model(r).eval() for r in v] for k, v in ensembles.items()}
    timings: dict[str, list[float]] = {"full Lite0 (one model)": [], **{f"ensemble ({k})": [] for k in models}}
    with torch.inference_mode():
        for _ in range(args.rounds):
            timings["full Lite0 (one model)"].append(latency_ms(full, 1, 64))
            for k, ms in models.items():
                timings[f"ensemble ({k})"].append(sum(latency_ms(x, 1, 64) for x in ms))
    sizes = {"full Lite0 (one model)": sum(p.numel() for p in full.parameters()),
             **{f"ensemble ({k})": sum(p.numel() for x in ms for p in x.parameters()) for k, ms in models.items()}}
    print("| model (64 px, batch 1, 1 thread) | parameters | latency, median of rounds (ms) |\n|---|---|---|")
    for k, t in timings.items():
        print(f"| {k} | {sizes[k]:,} | {statistics.median(t):.2f} |")


if __name__ == "__main__":
    main()
