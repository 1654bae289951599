"""One table from several `medtl compare` grids that differ only in the learning rate: per strategy, the rate whose
configuration has the best mean validation AUPRC (test metrics never looked at), then the paper's table with DeLong
p-values against FTL and TTL over the chosen runs, and every configuration tried.

    python benchmarks/beyond.py --grid runs/b64-lr1e-3:1e-3 --grid runs/b64-lr1e-2:1e-2 \
        --out benchmarks/results/beyond-breastmnist-lite0-64px

Writes ``<out>-table.{md,csv}``, ``<out>-configurations.csv`` (every strategy x rate, with its mean validation and
test metrics) and ``<out>-runs.csv`` (the chosen runs). Parameter-efficient methods are known to want larger rates
than full fine-tuning; choosing the rate on validation per strategy keeps the comparison fair to each.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medtl.artifacts import write_csv  # noqa: E402
from medtl.compare.significance import add_p_values  # noqa: E402
from medtl.compare.summary import best_on_validation, markdown, paper_rows, summarise  # noqa: E402

NUMERIC = ("test_auroc", "test_auprc", "test_accuracy", "val_auroc", "val_auprc", "latency_ms", "parameters",
           "trainable_parameters", "macs", "stored_bytes", "train_seconds")


def read_grid(folder: Path, lr: str) -> list[dict]:
    """A grid's ``runs.csv`` as records (numbers parsed, empty cut as None), each tagged with its rate and folder."""
    with open(folder / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.update({k: float(r[k]) for k in NUMERIC if r.get(k) not in (None, "")})
        r["cut"] = r["cut"] or None
        r["lr"], r["folder"] = lr, folder
    return rows


def choose(records: list[dict], select: str = "auprc") -> tuple[list[dict], list[dict]]:
    """(the records of each strategy's chosen rate, one summary row per strategy x cut x rate tried)."""
    tried, chosen = [], []
    for strategy in dict.fromkeys(r["strategy"] for r in records):
        rates = {}
        for lr in dict.fromkeys(r["lr"] for r in records if r["strategy"] == strategy):
            own = [r for r in records if (r["strategy"], r["lr"]) == (strategy, lr)]
            rows = summarise(own)
            tried += [{**row, "lr": lr} for row in rows]
            rates[lr] = (best_on_validation(rows, select), own)
        best = max(rates, key=lambda lr: (rates[lr][0][f"val_{select}_mean"], rates[lr][0]["val_auroc_mean"]))
        chosen += rates[best][1]
    return chosen, tried


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", action="append", required=True, help="FOLDER:LR, a compare output trained at rate LR")
    p.add_argument("--out", required=True, help="prefix of the files written")
    args = p.parse_args(argv)
    records = [r for spec in args.grid for r in read_grid(Path(spec.rsplit(":", 1)[0]), spec.rsplit(":", 1)[1])]
    chosen, tried = choose(records)
    with tempfile.TemporaryDirectory() as tmp:  # the chosen runs side by side, as add_p_values reads them
        (Path(tmp) / "runs").mkdir()
        for r in chosen:
            (Path(tmp) / "runs" / r["run"]).symlink_to((r["folder"] / "runs" / r["run"]).resolve())
        table = paper_rows(summarise(chosen))
        rate = {r["strategy"]: r["lr"] for r in chosen}
        table = add_p_values([{**row, "method": f"{row['method']} (lr {rate[row['strategy']]})"} for row in table],
                             chosen, Path(tmp))
        significance = {name: (Path(tmp) / name).read_text() for name in ("significance.csv",
                                                                          "significance_vs_truncated.csv")
                        if (Path(tmp) / name).exists()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, text in significance.items():
        Path(f"{out}-{name}").write_text(text)
    write_csv(Path(f"{out}-table.csv"), table)
    write_csv(Path(f"{out}-configurations.csv"), tried)
    keys = ["run", "strategy", "cut", "lr", "repeat", *NUMERIC]
    write_csv(Path(f"{out}-runs.csv"), [{k: r.get(k) for k in keys} for r in chosen])
    repeats = max(row["runs"] for row in tried)
    text = (f"{repeats} seed(s); per strategy the learning rate with the best mean validation AUPRC among "
            f"{', '.join(dict.fromkeys(r['lr'] for r in records))} ({len(tried)} configurations tried, "
            f"`{out.name}-configurations.csv`); p: DeLong, z averaged over seeds.\n\n" + markdown(table, "method"))
    Path(f"{out}-table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
