"""Write a CSV manifest of the Kermany chest X-ray folder with a patient column, so the validation split that medtl
draws from ``train`` keeps each patient whole (``--group-by patient``).

The folder has no validation split; drawn per image, the same patient's X-rays (and five pixel-identical copies,
which `medtl data check` finds) land on both sides of it. Patient ids come from the file names: ``personN_...`` for
pneumonia, ``IM-NNNN-...`` (or ``NORMAL2-IM-NNNN-...``) for normal. Train and test patient numbering is separate in
the source, so groups are only used within ``train``.

    python benchmarks/kermany_manifest.py ../shared/data/chest_xray_kermany runs/kermany.csv
"""
from __future__ import annotations

import argparse
import csv
import os
import re
from pathlib import Path

PATIENT = re.compile(r"^(person\d+|(?:NORMAL2-)?IM-\d+)[-_]")


def rows(root: Path, out_dir: Path):
    for split in ("train", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            for path in sorted((root / split / label).glob("*.jpeg")):
                match = PATIENT.match(path.name)
                if match is None:
                    raise SystemExit(f"{path}: no patient id in the file name (expected personN_ or IM-NNNN-)")
                yield os.path.relpath(path, out_dir), label, split, f"{split}:{match.group(1)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = list(rows(args.root, args.out.parent.resolve()))
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "patient"])
        writer.writerows(table)
    patients = {row[3] for row in table}
    print(f"{args.out}: {len(table)} images of {len(patients)} patients")


if __name__ == "__main__":
    main()
