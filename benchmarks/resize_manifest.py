"""A copy of a CSV manifest's images resized once, as lossless PNG, with medtl's own reader and resize: training on the
copy at the same ``--image-size`` sees exactly the pixels training on the originals sees (an image already at the
size is not resized again), in a fraction of the bytes, e.g. to carry a data set to a GPU machine.

    python benchmarks/resize_manifest.py runs/kermany.csv runs/kermany64 --size 64

Writes ``OUT/images/<row>.png`` and ``OUT/manifest.csv`` (the same columns, ``path`` relative to OUT). Only 8-bit
images are supported (16-bit ones would need 16-bit PNGs).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medtl.data.images import read_image, resize_array  # noqa: E402


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--size", type=int, required=True)
    args = p.parse_args(argv)
    with open(args.manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        source = Path(row["path"])
        a = resize_array(read_image(source if source.is_absolute() else args.manifest.parent / source), args.size)
        if a.dtype != np.uint8:
            raise SystemExit(f"{row['path']} (row {i + 2}) is not 8-bit; this copy keeps 8-bit images only")
        name = f"images/{i:06d}.png"
        Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(args.out / name)
        row["path"] = name
    with open(args.out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{args.out}/manifest.csv: {len(rows)} images at {args.size} px")


if __name__ == "__main__":
    main(sys.argv[1:])
