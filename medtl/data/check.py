"""Leakage guard: what in a data set would make its test numbers wrong without any error.

:func:`check_data` looks at a loaded :class:`~medtl.data.ImageDataset` (``medtl data check DATA``; ``medtl train``
runs it too and prints its findings as warnings) for:

- class counts per split;
- exact duplicates: images whose pixels, as loaded, are identical (a BLAKE2 hash of each image's bytes), within a
  split and across splits;
- near duplicates across splits: every image shrunk to 16 x 16 grey (area average), centred to zero mean and
  scaled to unit norm; two images whose cosine similarity is at least ``threshold`` (default
  :data:`NEAR_THRESHOLD`) are reported. Images of one flat colour have no such embedding and are compared
  exactly only. The cosines are blocked matrix products, so 10,000 images take seconds;
- the same image id (file path) more than once;
- groups (patients, studies) with images in more than one split;
- images whose mode, size or aspect ratio differs from most others (before resizing; folders and CSV files).

Leakage is what crosses splits (duplicates, near duplicates, ids or groups); within a split a duplicate only
weighs twice, so it is reported but not counted as leakage.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, MedtlWarning
from ..optional import available
from ..plotting import pyplot
from ..files import check_out_dir, make_dir, write_json
from . import load_dataset
from .dataset import SPLITS, ImageDataset

NEAR_THRESHOLD = 0.98  # docs/results/other.md: the pairs each threshold flags on BreastMNIST and the chest X-rays
EMBED_SIZE = 16
BLOCK = 2048  # rows of one similarity block: 2048 x 10,000 float32 = 80 MB
MINORITY = 0.05  # a mode held by fewer than this fraction of images is odd
SHOWN = 5  # examples quoted per finding in messages


@dataclass
class ImageRef:
    """One image of the data set: its split, index in that split, and id (file path or ``split[index]``)."""

    split: str
    index: int
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "index": self.index, "id": self.id}

    def __str__(self) -> str:
        return self.id if self.id.startswith((f"{self.split}[", f"{self.split}/")) else f"{self.id} ({self.split})"


@dataclass
class LeakageReport:
    """What :func:`check_data` found. ``leaks`` is True when anything crosses splits; see ``warnings()``."""

    name: str
    threshold: float
    classes: list[str]
    class_counts: dict[str, list[int]]
    split_note: str
    exact: list[list[ImageRef]] = field(default_factory=list)  # groups of pixel-identical images
    near: list[tuple[ImageRef, ImageRef, float]] = field(default_factory=list)  # cross-split pairs, most similar first
    repeated_ids: dict[str, list[ImageRef]] = field(default_factory=dict)
    straddling_groups: dict[str, list[str]] = field(default_factory=dict)  # group -> its splits
    odd_images: dict[str, list[str]] = field(default_factory=dict)  # reason -> ids
    flat_images: int = 0
    seconds: float = 0.0

    @property
    def exact_across(self) -> list[list[ImageRef]]:
        return [g for g in self.exact if len({i.split for i in g}) > 1]

    @property
    def exact_within(self) -> list[list[ImageRef]]:
        return [g for g in self.exact if len({i.split for i in g}) == 1]

    @property
    def leaks(self) -> bool:
        across_ids = any(len({i.split for i in images}) > 1 for images in self.repeated_ids.values())
        return bool(self.exact_across or self.near or self.straddling_groups or across_ids)

    def warnings(self) -> list[str]:
        """One message per finding, each saying what it does to the numbers and what to do."""
        out = []
        if self.exact_across:
            n = sum(len(g) for g in self.exact_across)
            out.append(f"{self.name}: {len(self.exact_across)} set(s) of pixel-identical images span splits "
                       f"({n} images), e.g. {_show_group(self.exact_across[0])}; a model is scored on images it "
                       "trained on, so test numbers are too high. Remove the copies (keep one per set).")
        if self.near:
            a, b, cos = self.near[0]
            out.append(f"{self.name}: {len(self.near)} pair(s) of near-duplicate images across splits (cosine >= "
                       f"{self.threshold} of 16x16 grey thumbnails), e.g. {a} ~ {b} ({cos:.4f}); look at them "
                       "(`medtl data check --out DIR` draws pairs.png): the same scan re-saved, cropped or from the "
                       "same patient leaks into the test numbers.")
        if self.straddling_groups:
            group, splits = next(iter(self.straddling_groups.items()))
            out.append(f"{self.name}: {len(self.straddling_groups)} group(s) have images in more than one split, "
                       f"e.g. {group!r} in {', '.join(splits)}; images of one patient in train and test overstate "
                       "test numbers. Give whole groups one split, or let medtl draw the splits (--group-by).")
        if self.repeated_ids:
            first, images = next(iter(self.repeated_ids.items()))
            out.append(f"{self.name}: {len(self.repeated_ids)} image id(s) occur more than once, e.g. {first!r} "
                       f"{len(images)} times ({', '.join(i.split for i in images)}); remove the repeats.")
        if self.exact_within:
            n = sum(len(g) - 1 for g in self.exact_within)
            out.append(f"{self.name}: {n} redundant pixel-identical copies within splits, e.g. "
                       f"{_show_group(self.exact_within[0])}; they weigh twice in training and scoring. Remove "
                       "them unless that is intended.")
        for reason, ids in self.odd_images.items():
            out.append(f"{self.name}: {len(ids)} image(s) {reason}, e.g. {', '.join(ids[:SHOWN])}; check that "
                       "they belong to this data set.")
        return out

    def summary(self) -> str:
        """A few lines for the terminal: the counts per split and every finding."""
        width = max(len(c) for c in self.classes) if self.classes else 5
        lines = [f"{self.name}: {self.split_note}",
                 f"{'class':<{width}}  " + "  ".join(f"{s:>7}" for s in SPLITS)]
        for k, c in enumerate(self.classes):
            lines.append(f"{c:<{width}}  " + "  ".join(f"{self.class_counts[s][k]:>7}" for s in SPLITS))
        found = self.warnings()
        lines += [f"- {w}" for w in found] or ["no duplicates, near duplicates, repeated ids or split-straddling "
                                               f"groups found (near-duplicate threshold {self.threshold})."]
        lines.append(f"checked in {self.seconds:.2f} s; {'LEAKAGE across splits' if self.leaks else 'no leakage'}"
                     + (f"; {self.flat_images} flat image(s) compared exactly only" if self.flat_images else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (``leakage.json``)."""
        return {
            "data": self.name, "leaks": self.leaks, "threshold": self.threshold, "split_note": self.split_note,
            "classes": self.classes, "class_counts": self.class_counts,
            "exact_duplicates": [[i.to_dict() for i in g] for g in self.exact],
            "near_duplicates": [{"a": a.to_dict(), "b": b.to_dict(), "cosine": round(c, 6)} for a, b, c in self.near],
            "repeated_ids": {k: [i.to_dict() for i in v] for k, v in self.repeated_ids.items()},
            "straddling_groups": self.straddling_groups, "odd_images": self.odd_images,
            "flat_images": self.flat_images, "seconds": self.seconds, "warnings": self.warnings(),
        }


def check_data(data: ImageDataset, threshold: float = NEAR_THRESHOLD) -> LeakageReport:
    """Check ``data`` for leakage between its splits and for odd images (see the module docstring)."""
    start = time.perf_counter()
    present = [s for s in SPLITS if len(data.split(s))]
    # ImageDataset gives every split ids (``name[i]`` when the source has none), so ids is never None here
    images = [ImageRef(s, i, data.split(s).ids[i])  # type: ignore[index]
              for s in present for i in range(len(data.split(s)))]
    counts = {s: data.class_counts(s) if len(data.split(s)) else [0] * data.num_classes for s in SPLITS}
    report = LeakageReport(data.name, threshold, list(data.classes), counts,
                           str(data.source.get("split_note", "")))
    hashes = [h for s in present for h in _hashes(data.split(s).images)]
    by_hash: dict[bytes, list[ImageRef]] = defaultdict(list)
    for h, image in zip(hashes, images):
        by_hash[h].append(image)
    report.exact = [g for g in by_hash.values() if len(g) > 1]
    embeddings = {s: _embed(data.split(s).images) for s in present}
    report.flat_images = sum(int((~ok).sum()) for _, ok in embeddings.values())
    offsets = np.cumsum([0] + [len(data.split(s)) for s in present])
    code = {s: offsets[k] for k, s in enumerate(present)}
    for a_pos, a in enumerate(present):
        for b in present[a_pos + 1:]:
            for i, j, cos in _similar_pairs(embeddings[a], embeddings[b], threshold):
                if hashes[code[a] + i] != hashes[code[b] + j]:  # identical ones are reported as exact
                    report.near.append((images[code[a] + i], images[code[b] + j], cos))
    report.near.sort(key=lambda t: -t[2])
    ids: dict[str, list[ImageRef]] = defaultdict(list)
    for image in images:
        ids[image.id].append(image)
    report.repeated_ids = {k: v for k, v in ids.items() if len(v) > 1}
    report.straddling_groups = _straddling(data, present)
    report.odd_images = _odd_formats(data, present)
    report.seconds = time.perf_counter() - start
    return report


def warn_leakage(data: ImageDataset, threshold: float = NEAR_THRESHOLD) -> LeakageReport:
    """:func:`check_data`, each finding issued as a :class:`~medtl.errors.MedtlWarning` (``medtl train`` does this
    before training; it costs a fraction of a second on MedMNIST-sized data)."""
    report = check_data(data, threshold)
    for message in report.warnings():
        warnings.warn(message, MedtlWarning, stacklevel=2)
    return report


def _hashes(images: torch.Tensor) -> list[bytes]:
    """A 128-bit BLAKE2 digest of each image's pixel bytes (dtype and shape are the data set's, so equal bytes mean
    equal images)."""
    flat = images.reshape(len(images), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def _embed(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 256)`` unit-norm, zero-mean 16 x 16 grey thumbnails and which images have one (not flat)."""
    out = []
    for start in range(0, len(images), BLOCK):
        x = images[start:start + BLOCK].float().mean(1, keepdim=True)  # the scale (255 or 1) cancels below
        if x.ndim == 5:  # volumes: compared by their projection along depth
            x = x.mean(2)
        out.append(F.adaptive_avg_pool2d(x, EMBED_SIZE).flatten(1))
    e = torch.cat(out)
    e = e - e.mean(1, keepdim=True)
    norm = e.norm(dim=1, keepdim=True)
    ok = norm[:, 0] > 1e-6 * e.abs().amax().clamp_min(1e-12)
    return torch.where(ok[:, None], e / norm.clamp_min(1e-12), torch.zeros_like(e)), ok


def _similar_pairs(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor],
                   threshold: float) -> list[tuple[int, int, float]]:
    """``(i, j, cosine)`` of every pair with cosine >= ``threshold``, in blocks of ``BLOCK`` rows of ``a``."""
    (ea, ok_a), (eb, ok_b) = a, b
    pairs = []
    for start in range(0, len(ea), BLOCK):
        sim = ea[start:start + BLOCK] @ eb.T
        sim[~ok_a[start:start + BLOCK]] = -1
        sim[:, ~ok_b] = -1
        i, j = torch.nonzero(sim >= threshold, as_tuple=True)
        pairs += [(start + int(p), int(q), float(sim[p, q])) for p, q in zip(i, j)]
    return pairs


def _straddling(data: ImageDataset, present: list[str]) -> dict[str, list[str]]:
    """Groups with images in more than one split (only where the source gave groups)."""
    where: dict[str, set[str]] = defaultdict(set)
    for s in present:
        for g in data.split(s).groups or []:
            where[g].add(s)
    return {g: [s for s in SPLITS if s in splits] for g, splits in where.items() if len(splits) > 1}


def _odd_formats(data: ImageDataset, present: list[str]) -> dict[str, list[str]]:
    """Images whose file mode is rare (< 5% of the images), or whose area is under 1/4 or over 4 times the median,
    or whose aspect ratio is over 2 times off the median; from the formats recorded at load (``"W x H mode"``)."""
    rows = [(fmt, i) for s in present for fmt, i in zip(data.split(s).formats or [], data.split(s).ids or [])]
    if not rows:
        return {}
    parsed = [(fmt.split(" ", 1), i) for fmt, i in rows]
    modes = Counter(mode for (_, mode), _ in parsed)
    sizes = np.array([[int(v) for v in size.split("x")] for (size, _), _ in parsed], dtype=np.float64)
    area, aspect = sizes.prod(1), sizes[:, 0] / sizes[:, 1]
    med_area, med_aspect = np.median(area), np.median(aspect)
    odd: dict[str, list[str]] = defaultdict(list)
    for k, ((_, mode), image_id) in enumerate(parsed):
        if modes[mode] < MINORITY * len(parsed):
            odd[f"have the rare mode {mode} (most are {modes.most_common(1)[0][0]})"].append(image_id)
        if not med_area / 4 <= area[k] <= med_area * 4:
            odd[f"are far smaller or larger than the median size ({int(med_area)} pixels)"].append(image_id)
        if not med_aspect / 2 <= aspect[k] <= med_aspect * 2:
            odd[f"have an aspect ratio over 2 times off the median ({med_aspect:.2f})"].append(image_id)
    return dict(odd)


def _show_group(group: list[ImageRef]) -> str:
    return " = ".join(str(i) for i in group[:SHOWN]) + (" = ..." if len(group) > SHOWN else "")


def plot_pairs(report: LeakageReport, data: ImageDataset, path: Path, count: int = 8) -> Path | None:
    """Draw up to ``count`` flagged pairs side by side (exact duplicates across splits first, then the most similar
    near duplicates) into ``path``; None when there is nothing to draw or matplotlib is not installed."""
    pairs = [(g[0], g[1], 1.0, "identical") for g in report.exact_across]
    pairs += [(a, b, c, f"cosine {c:.4f}") for a, b, c in report.near]
    pairs = pairs[:count]
    if not pairs:
        return None
    if not available("matplotlib"):
        return None
    plt = pyplot("the pairs figure")
    fig, axes = plt.subplots(len(pairs), 2, figsize=(5, 2.6 * len(pairs)), squeeze=False)
    for row, (a, b, _, label) in zip(axes, pairs):
        for ax, image in zip(row, (a, b)):
            x = data.split(image.split).float_images([image.index])[0]
            if x.ndim == 4:  # a volume: drawn as its projection along depth, as it was compared
                x = x.mean(1)
            ax.imshow(x.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            name = str(image)
            ax.set_title(name if len(name) <= 40 else f"...{name[-37:]}", fontsize=7)
            ax.axis("off")
        row[0].text(1.05, -0.08, label, transform=row[0].transAxes, ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def check_command(spec: str, *, out: str | Path | None = None, threshold: float | None = None,
                  threads: int | None = None, **load) -> int:
    """``medtl data check``: load ``spec`` (``load``: :func:`~medtl.data.load_dataset` options) with ``threads``
    CPU threads (default: torch's), print the report,
    write ``leakage.json`` and ``pairs.png`` into ``out``; the exit status is 1 when anything leaks across splits,
    else 0 (bad input raises, which the command line turns into 2)."""
    threshold = NEAR_THRESHOLD if threshold is None else threshold
    if not 0 < threshold <= 1:
        raise ConfigError(f"--threshold is a cosine similarity in (0, 1], got {threshold}.")
    if out is not None:
        out = check_out_dir(out)  # before the data is read
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset(spec, **load)
    report = check_data(data, threshold)
    print(report.summary())
    if out is not None:
        make_dir(out)
        write_json(out / "leakage.json", report.to_dict())
        drawn = plot_pairs(report, data, out / "pairs.png")
        print(f"wrote {out / 'leakage.json'}" + (f" and {drawn}" if drawn else ""))
    return 1 if report.leaks else 0
