"""Successive halving (``medtl search --scheduler asha``) against the exhaustive curve of ``cut_choice.py``:

    python -m medtl search --scheduler asha --backbone efficientnet_lite0 --data breastmnist --image-size 64 \\
        --epochs 15 --patience 5 --seeds 0,1,2 --workers 2 --threads 1 --no-report --out runs/asha-64
    python benchmarks/asha.py runs/asha-64 benchmarks/results/cut-choice-64.json --out benchmarks/results/asha-64

The options are those of the exhaustive grid, so every cut trained to the end is the same run (same name, same
seeded CPU training) as the grid's and must reproduce its recorded test AUROC. Seconds depend on the machine's load:
besides the raw fraction of the recorded exhaustive time, the fraction is given after scaling the search's seconds by
how much slower the cuts it trained to the end ran now than when the exhaustive curve was recorded."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("search", type=Path, help="the output directory of `medtl search --scheduler asha`")
    p.add_argument("exhaustive", type=Path, help="cut_choice.json of the exhaustive curve")
    p.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = p.parse_args()
    search = json.loads((args.search / "search.json").read_text())
    with open(args.search / "search.csv", newline="") as f:
        rows = {r["cut"]: r for r in csv.DictReader(f)}
    exhaustive = json.loads(args.exhaustive.read_text())
    curve = {r["cut"]: r for r in exhaustive["curve"]}
    finished = [c for c, r in rows.items() if not r["stopped_at"]]
    now = sum(float(rows[c]["train_seconds"]) for c in finished)
    then = sum(curve[c]["train_seconds_mean"] * curve[c]["runs"] for c in finished)
    seconds, total = search["cost"]["train_seconds"], exhaustive["exhaustive_train_seconds"]
    pick = search["pick"]
    result = {
        "pick": pick, "pick_test_auroc": float(rows[pick]["test_auroc_mean"]),
        "pick_test_auroc_recorded": curve[pick]["test_auroc_mean"], "best_cut": exhaustive["best_test_cut"],
        "best_test_auroc": exhaustive["best_test_auroc"],
        "gap": exhaustive["best_test_auroc"] - float(rows[pick]["test_auroc_mean"]),
        "finished_cuts": finished,
        "reproduced": {c: [float(rows[c]["test_auroc_mean"]), curve[c]["test_auroc_mean"]] for c in finished},
        "stopped_at": {c: int(r["stopped_at"]) for c, r in rows.items() if r["stopped_at"]},
        "epochs": search["cost"]["epochs"], "exhaustive_epochs_at_most": search["cost"]["exhaustive_epochs_at_most"],
        "train_seconds": seconds, "exhaustive_train_seconds": total, "fraction_raw": seconds / total,
        "slowdown_now": now / then, "fraction_load_corrected": seconds / (now / then) / total,
        "milestones": search["halving"]["milestones"],
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = (f"ASHA (rungs after {result['milestones']} epochs, halving) on {exhaustive['data']}, "
          f"{exhaustive['image_size']} px, seeds {exhaustive['seeds']}: pick `{pick}`, test AUROC "
          f"{result['pick_test_auroc']:.4f} (recorded "
          f"{result['pick_test_auroc_recorded']:.4f}); best cut `{result['best_cut']}` {result['best_test_auroc']:.4f},"
          f" gap {result['gap']:.4f}. {result['epochs']} epochs (exhaustive at most "
          f"{result['exhaustive_epochs_at_most']}), {seconds:.0f} s of training: {result['fraction_raw']:.1%} of the "
          f"recorded exhaustive {total:.0f} s; the cuts trained to the end ran {result['slowdown_now']:.2f}x slower "
          f"now, so at the recorded load {result['fraction_load_corrected']:.1%}.\n")
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
