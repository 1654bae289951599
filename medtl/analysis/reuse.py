"""Feature reuse of a fine-tuned run (the TruncatedTL paper's SVCCA figure): at every cut up to the run's cut,
how similar are the fine-tuned features to the pretrained ones they started from?

High similarity means the layer was reused nearly as pretrained; low similarity (near the random baseline) means
fine-tuning rewrote it, which is the paper's argument for discarding the top of the network.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..artifacts import MODEL_SPEC, load_model, write_csv
from ..backbones import Cut, backbone_cuts, create_backbone, find_cut
from ..backbones.volume import volume_backbone
from ..config import TrainConfig
from ..data import Preprocess
from ..errors import ConfigError, DataError, MedtlWarning
from ..model import ModelSpec
from ..optional import require
from ..plotting import pyplot
from ..resolve import load_data
from ..rundir import RunDir
from .features import walk_cuts
from .similarity import MAX_POINTS, Moments, as_points, cka_moments, svcca_moments

FIGURE = "reuse.png"
TABLE = "reuse.csv"


@dataclass
class CutReuse:
    """Similarity of pretrained and fine-tuned features at one cut (``coefficients`` empty when undefined)."""

    cut: Cut
    stage: str
    shape: tuple[int, ...]  # (C, H, W), or (C, D, H, W) for a volume model
    points: int
    coefficients: np.ndarray
    baseline: np.ndarray
    cka: float
    cka_baseline: float
    test_auprc: list[float] = field(default_factory=list)

    def row(self) -> dict:
        def stat(values: np.ndarray, q: float) -> float:
            return float(np.quantile(values, q)) if len(values) else math.nan

        c, *depth, h, w = self.shape
        return {
            "cut": self.cut.name, "level": self.cut.level, "stage": self.stage, "channels": c,
            **({"depth": depth[0]} if depth else {}), "height": h, "width": w, "points": self.points,
            "coefficients": len(self.coefficients),
            "svcca_mean": float(self.coefficients.mean()) if len(self.coefficients) else math.nan,
            "svcca_q1": stat(self.coefficients, 0.25), "svcca_median": stat(self.coefficients, 0.5),
            "svcca_q3": stat(self.coefficients, 0.75),
            "baseline_mean": float(self.baseline.mean()) if len(self.baseline) else math.nan,
            "baseline_median": stat(self.baseline, 0.5),
            "svcca_above_baseline": (float(self.coefficients.mean() - self.baseline.mean()) if len(self.coefficients)
                                     else math.nan),
            "cka": self.cka, "cka_baseline": self.cka_baseline,
            "test_auprc_mean": float(np.mean(self.test_auprc)) if self.test_auprc else math.nan,
            "test_auprc_std": _std(self.test_auprc) if self.test_auprc else math.nan,
            "test_auprc_runs": len(self.test_auprc),
        }


@dataclass
class Reuse:
    """The analysis of one run: a :class:`CutReuse` per cut, and a title saying what was compared."""

    title: str
    cuts: list[CutReuse]

    def table(self) -> str:
        lines = [self.title,
                 f"{'cut':<16}{'SVCCA mean':>11}{'baseline':>10}{'CKA':>8}{'CKA base':>10}{'test AUPRC':>12}"]
        for r in map(CutReuse.row, self.cuts):
            lines.append(f"{r['cut']:<16}{r['svcca_mean']:>11.3f}{r['baseline_mean']:>10.3f}{r['cka']:>8.3f}"
                         f"{r['cka_baseline']:>10.3f}{r['test_auprc_mean']:>12.4f}")
        return "\n".join(lines).replace("nan", "  -")


def _std(values: list[float]) -> float:
    """Sample standard deviation over runs (0 for one run), as ``medtl compare`` reports it."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def stages(cuts: list[Cut]) -> list[str]:
    """The stage each cut lies in, named by the block-level cut that ends it (``stem`` for the stem)."""
    names, pending = [], []
    for cut in cuts:
        pending.append(cut)
        if cut.level in ("stem", "block"):
            names += [cut.name] * len(pending)
            pending = []
    return names + [cuts[-1].name] * len(pending)


def _run_config(run: Path) -> TrainConfig:
    if not RunDir(run).started:
        raise ConfigError(f"{run} has no {RunDir.CONFIG}, so the data it was trained on is unknown; analyse a run "
                          "directory written by `medtl train`.")
    return RunDir(run).load_config()


def reuse(run: str | Path, *, images: int = 128, split: str = "test", weights: str | None = None,
          results: str | Path | None = None, batch_size: int = 32, max_points: int = MAX_POINTS,
          seed: int = 0) -> Reuse:
    """SVCCA and linear CKA between the pretrained and the fine-tuned features of ``run`` at every cut up to its
    cut, on ``images`` images of ``split``, each with a baseline against random features of the same shape.

    Args:
        weights: the pretrained weights the run started from (default: those in its config.yaml).
        results: a directory of truncated runs of the same backbone and data (e.g. a compare or search output);
            their test AUPRC per cut is attached for the figure.
    """
    run = Path(run)
    model = load_model(run)
    spec, cfg = model.spec, _run_config(run)
    weights = weights or cfg.weights
    if weights in (None, "none", "random"):
        raise ConfigError(f"{run} was trained from random weights; there are no pretrained features to compare "
                          "with. Pass --weights imagenet (or a weights file) to compare with those.")
    reference, _ = create_backbone(spec.backbone, weights, spec.in_chans)
    all_cuts = backbone_cuts(reference)
    if spec.volume is not None:  # the pretrained network as the run converted it: SVCCA on 3D features
        reference = volume_backbone(reference, spec.volume)
    reference.eval()
    last = all_cuts.index(find_cut(all_cuts, spec.cut))
    cuts, cut_stages = all_cuts[:last + 1], stages(all_cuts)[:last + 1]
    x = _sample(cfg, split, images, seed)
    preprocess = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std))
    moments = [Moments() for _ in cuts]
    baselines = [Moments() for _ in cuts]
    shapes: list[tuple[int, ...]] = [(0, 0, 0)] * len(cuts)
    noise = torch.Generator().manual_seed(seed)
    for b, start in enumerate(range(0, len(x), batch_size)):
        batch = preprocess(x[start:start + batch_size])
        cap = math.ceil(max_points * len(batch) / len(x))
        pairs = zip(walk_cuts(reference, cuts, batch), walk_cuts(model.trunk, cuts, batch))
        for i, ((_, pre), (_, fine)) in enumerate(pairs):
            shapes[i] = tuple(fine.shape[1:])
            p, f = as_points(pre, fine, cap, seed=seed + b)
            moments[i].add(p, f)
            baselines[i].add(p, torch.randn(f.shape, generator=noise, dtype=f.dtype))
    auprc = cut_auprc(results, spec, cfg.data) if results else {}
    out = []
    for cut, stage, shape, m, base in zip(cuts, cut_stages, shapes, moments, baselines):
        try:
            coefficients, baseline = svcca_moments(m), svcca_moments(base)
        except DataError as e:
            warnings.warn(f"{cut.name}: SVCCA skipped: {e}", MedtlWarning, stacklevel=2)
            coefficients = baseline = np.array([])
        out.append(CutReuse(cut, stage, shape, m.n, coefficients, baseline, cka_moments(m), cka_moments(base),
                            auprc.get(cut.name, [])))
    title = (f"{run.name}: {spec.backbone} cut at {spec.cut}, {spec.image_size} px; {len(x)} {split} images; "
             f"pretrained = {weights}")
    return Reuse(title, out)


def _sample(cfg: TrainConfig, split: str, images: int, seed: int) -> torch.Tensor:
    """``images`` images of ``split`` of the data the run was trained on (a seeded random subset)."""
    if images < 2:
        raise ConfigError(f"--images must be at least 2, got {images}.")
    data = load_data(cfg).split(split)
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:images]
    return data.images[keep.sort().values]


def cut_auprc(results: str | Path, spec: ModelSpec, data: str) -> dict[str, list[float]]:
    """Test AUPRC per cut of every truncated run under ``results`` (searched recursively) with the backbone, image
    size and data of ``spec``'s run."""
    results = Path(results)
    if not results.is_dir():
        raise ConfigError(f"--results {results} is not a directory of runs.")
    found: dict[str, list[float]] = {}
    for path in sorted(results.rglob(RunDir.METRICS)):
        m = json.loads(path.read_text())
        model = path.with_name(MODEL_SPEC)
        size = json.loads(model.read_text()).get("image_size") if model.is_file() else None
        if (m.get("strategy") == "truncated" and m.get("backbone") == spec.backbone and "test_auprc" in m
                and size in (None, spec.image_size) and Path(str(m.get("data", data))).stem == Path(data).stem):
            found.setdefault(m["cut"], []).append(float(m["test_auprc"]))
    if not found:
        raise ConfigError(f"no truncated {spec.backbone} runs on {data} at {spec.image_size} px under {results}.")
    return found


def write_reuse(result: Reuse, out: str | Path) -> tuple[Path, Path]:
    """Write the table (``reuse.csv``) and the figure (``reuse.png``) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / TABLE, [r.row() for r in result.cuts])
    plot_reuse(result.cuts, out / FIGURE, result.title)
    return out / FIGURE, out / TABLE


def plot_reuse(result: list[CutReuse], path: Path, title: str = "") -> None:
    """Box plots of SVCCA coefficients per cut (colour = stage) beside the grey random baseline, linear CKA as a
    line, and the test AUPRC per cut (mean ± std over runs) on a twin axis when known."""
    plt = pyplot("the reuse figure")
    Patch = require("matplotlib.patches", extra="plot", purpose="the reuse figure").Patch
    names = list(dict.fromkeys(r.stage for r in result))
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(names)}
    xs = np.arange(len(result))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * len(result) + 2), 4.8), dpi=150)
    for x, r in zip(xs, result):
        if not len(r.coefficients):
            continue
        for values, offset, colour in ((r.coefficients, -0.18, colours[r.stage]), (r.baseline, 0.18, "0.7")):
            box = ax.boxplot([values], positions=[x + offset], widths=0.32, patch_artist=True, showfliers=False)
            for patch in box["boxes"]:
                patch.set(facecolor=colour, edgecolor="0.2", linewidth=0.8)
            for part in ("whiskers", "caps", "medians"):
                for line in box[part]:
                    line.set(color="0.2", linewidth=0.8)
    ax.plot(xs, [r.cka for r in result], "k.-", linewidth=1, markersize=5, label="linear CKA")
    ax.set_xticks(xs, [r.cut.name for r in result], rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(result) - 0.4)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("pretrained vs fine-tuned similarity")
    ax.set_xlabel("cut point")
    handles = [Patch(facecolor=colours[s], edgecolor="0.2", label=s) for s in names]
    handles += [Patch(facecolor="0.7", edgecolor="0.2", label="random baseline"), ax.lines[-1]]
    known = [(x, r.test_auprc) for x, r in zip(xs, result) if r.test_auprc]
    if known:
        twin = ax.twinx()
        px = np.array([x for x, _ in known])
        mean = np.array([np.mean(v) for _, v in known])
        std = np.array([_std(v) for _, v in known])
        twin.fill_between(px, mean - std, mean + std, color="tab:purple", alpha=0.15, linewidth=0)
        (line,) = twin.plot(px, mean, "-o", color="tab:purple", markersize=3.5, linewidth=1.4,
                            label="test AUPRC (truncated here)")
        twin.set_ylabel("test AUPRC", color="tab:purple")
        twin.tick_params(axis="y", colors="tab:purple")
        handles.append(line)
    fig.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95),
               title="SVCCA coefficients\nby stage", title_fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
