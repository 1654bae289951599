"""A seeded, stratified subset of a data set's training images, so an exhaustive per-cut grid fits a 2-core machine:

    python benchmarks/subsample.py runs/kermany.csv runs/kermany-sub.csv --train 800 --val 200 --group patient
    python benchmarks/subsample.py ../shared/data/medmnist/adrenalmnist3d.npz runs/adrenal-sub.npz --train 400

A CSV manifest (``path,label[,split][,group]``): ``--train`` and ``--val`` images are drawn from its ``train`` rows,
whole groups at a time (``--group``: a patient never spans the two), each class in its share of the source; the
``test`` rows are kept whole, so test numbers stay comparable with the full data set. Without ``--val`` the source's
``val`` rows are kept. A MedMNIST ``.npz``: ``--train`` training images per class share, validation and test whole.
Groups make the counts approximate (whole patients are taken until each class reaches its share); the script prints
what it wrote.
"""
from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np


def stratified(labels: list[str], groups: list[str], n: int, rng: np.random.Generator,
               exclude: set[str] | None = None) -> set[str]:
    """Groups drawn at random, per class of their first image, until each class holds its share of ``n`` images."""
    by_class: dict[str, list[str]] = defaultdict(list)
    size: Counter[str] = Counter(groups)
    first: dict[str, str] = {}
    for label, group in zip(labels, groups):
        first.setdefault(group, label)
    for group, label in first.items():
        if group not in (exclude or set()):
            by_class[label].append(group)
    total = sum(size[g] for members in by_class.values() for g in members)
    if n > total:
        raise SystemExit(f"asked for {n} images but only {total} are available to draw")
    chosen: set[str] = set()
    for _, members in sorted(by_class.items()):
        share = round(n * sum(size[g] for g in members) / total)
        taken = 0
        for i in rng.permutation(len(members)):
            if taken >= share:
                break
            chosen.add(members[i])
            taken += size[members[i]]
    return chosen


def manifest(src: Path, out: Path, args: argparse.Namespace, rng: np.random.Generator) -> str:
    with open(src, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    if "split" not in fields:
        raise SystemExit(f"{src}: no split column; the subset draws from the train rows and keeps the test rows")
    train = [r for r in rows if r["split"] == "train"]
    group = (lambda r: r[args.group]) if args.group else (lambda r: r["path"])
    labels, groups = [r["label"] for r in train], [group(r) for r in train]
    val_groups = stratified(labels, groups, args.val, rng) if args.val else set()
    train_groups = stratified(labels, groups, args.train, rng, exclude=val_groups)
    kept = [{**r, "split": "val"} for r in train if group(r) in val_groups]
    kept = [{**r, "split": "train"} for r in train if group(r) in train_groups] + kept
    kept += [r for r in rows if r["split"] == "test" or (not args.val and r["split"] == "val")]
    # paths in a manifest are relative to its folder: rewrite them for the new file's folder
    for r in kept:
        path = Path(r["path"])
        if not path.is_absolute():
            r["path"] = str((src.parent / path).resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    counts = Counter((r["split"], r["label"]) for r in kept)
    return ", ".join(f"{s} {sum(v for (k, _), v in counts.items() if k == s)} "
                     f"({', '.join(f'{lab} {v}' for (k, lab), v in sorted(counts.items()) if k == s)})"
                     for s in ("train", "val", "test"))


def npz(src: Path, out: Path, args: argparse.Namespace, rng: np.random.Generator) -> str:
    if args.val:
        raise SystemExit("--val applies to manifests; a MedMNIST .npz keeps its own validation split")
    arrays = dict(np.load(src))
    y = arrays["train_labels"].reshape(len(arrays["train_labels"]), -1)[:, 0].astype(str).tolist()
    index = sorted(int(i) for i in stratified(y, [str(i) for i in range(len(y))], args.train, rng))
    arrays["train_images"], arrays["train_labels"] = arrays["train_images"][index], arrays["train_labels"][index]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return ", ".join(f"{s} {len(arrays[f'{s}_labels'])}" for s in ("train", "val", "test"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a CSV manifest with a split column, or a MedMNIST .npz")
    p.add_argument("out", type=Path)
    p.add_argument("--train", type=int, required=True, help="training images to keep (about, with --group)")
    p.add_argument("--val", type=int, default=0, help="validation images to draw from train (manifests only)")
    p.add_argument("--group", help="the manifest column whose groups (patients) stay whole")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    write = npz if args.source.suffix == ".npz" else manifest
    print(f"{args.out}: {write(args.source, args.out, args, rng)}")


if __name__ == "__main__":
    main()
