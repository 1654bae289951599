"""``--cut auto`` on a larger data set: the estimate on every train+val image against the estimate on the stratified
sample of 2,000 that medtl now scores (time, pick, and how the per-cut scores agree).

    python benchmarks/autocut_sample.py --data runs/kermany.csv --group-by patient \
        --out benchmarks/results/autocut-sample-kermany
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy.stats import spearmanr

from medtl.analysis.autocut import MAX_IMAGES, estimate_cut
from medtl.config import TrainConfig
from medtl.resolve import load_data, model_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--group-by")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(data=args.data, group_by=args.group_by, backbone=args.backbone, image_size=args.image_size)
    data = load_data(cfg)
    runs = {name: estimate_cut(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg), limit=limit)
            for name, limit in (("sample", MAX_IMAGES), ("every image", 10 ** 9))}
    a, b = ([s.score for s in runs[k].scores] for k in ("sample", "every image"))
    result = {k: {"images": r.images, "seconds": r.seconds, "pick": r.pick, "best": r.best,
                  "scores": {s.cut: s.score for s in r.scores}} for k, r in runs.items()}
    result["spearman_rho"] = float(spearmanr(a, b).statistic)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [f"# --cut auto on {args.data}, {args.backbone}, {args.image_size} px, {args.threads} thread(s)", "",
             "| scored on | images | seconds | pick | best score |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {r['images']:,} | {r['seconds']:.1f} | `{r['pick']}` | `{r['best']}` |"
              for k, r in result.items() if isinstance(r, dict)]
    lines += ["", f"Spearman rho between the two sets of per-cut scores: {result['spearman_rho']:.3f}"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
