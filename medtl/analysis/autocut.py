"""``--cut auto``: choose the cut from one forward pass instead of fine-tuning at every cut.

The pretrained backbone sees the training and validation images once; the globally average-pooled features at
every cut (what the ``avg`` head sees) are scored by the leave-one-out AUROC (or AUPRC) of a ridge probe, and the
shallowest cut within one standard error of the best score is picked. The probe measures how linearly separable
the classes are in the *pretrained* features, so it is a proxy: fine-tuning changes the features, most at the
deepest cuts (see ``medtl analyze reuse``). docs/results/breastmnist-strategies.md gives how well it agrees with exhaustive
fine-tuning and where it does not, and how it compares with a logistic probe (validation or 5-fold) and LogME
(``benchmarks/cut_scores.py``): none of them was better at both image sizes measured; this one is deterministic,
as cheap as LogME and about 10x cheaper than the cross-validated logistic probe.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from ..backbones import Cut, backbone_cuts, create_backbone
from ..backbones.cuts import LEVELS
from ..backbones.volume import volume_backbone
from ..config import TrainConfig
from ..data import ImageDataset, Preprocess
from ..errors import ConfigError, DataError
from ..resolve import load_data, model_weights, volume_of
from ..source import SourceRun
from .features import walk_cuts

METRICS = ("auroc", "auprc")
MAX_IMAGES = 2000  # a stratified sample of train+val this large scores the cuts on larger data sets (see sample)
LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)  # ridge penalties per image, on standardised features


@dataclass
class CutScore:
    """A cut and the leave-one-out score of the probe on the pretrained features there."""

    cut: str
    level: str
    channels: int
    score: float


@dataclass
class AutoCut:
    """The estimate: every cut's score, the best one, the pick (the shallowest cut within ``tolerance`` of the
    best), and what it cost."""

    pick: str
    best: str
    tolerance: float
    metric: str
    scores: list[CutScore]
    images: int
    image_size: int
    seconds: float
    sampled: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [f"--cut auto: leave-one-out {self.metric.upper()} of a ridge probe on pooled pretrained features "
                 f"({self.images} train+val images{' (a stratified sample)' if self.sampled else ''}, "
                 f"{self.image_size} px, {self.seconds:.1f}s); pick: the "
                 f"shallowest cut within {self.tolerance:.4f} (one standard error) of the best"]
        lines += [f"  {s.cut:<28}{s.level:<7}{s.channels:>6} ch  {s.score:.4f}"
                  f"{'  <- pick' if s.cut == self.pick else ''}{'  (best)' if s.cut == self.best != self.pick else ''}"
                  for s in self.scores]
        return "\n".join(lines)


@torch.no_grad()
def pooled_features(backbone: str, data: ImageDataset, image_size: int, *, weights: str | dict = "imagenet",
                    levels: tuple[str, ...] = LEVELS, splits: tuple[str, ...] = ("train", "val"),
                    batch_size: int = 64, index: np.ndarray | None = None,
                    volume: str | None = None) -> tuple[list[Cut], list[np.ndarray]]:
    """Globally average-pooled pretrained features ``(images, channels)`` at every cut of the given ``levels``
    for the images of ``splits`` (those at ``index`` of them, if given), from a single forward pass of the
    backbone (converted to 3D by ``volume``)."""
    model, spec = create_backbone(backbone, weights, data.in_chans)
    chosen = [c for c in backbone_cuts(model) if c.level in levels]
    if volume is not None:
        model = volume_backbone(model, volume)
    model.eval()
    preprocess = Preprocess(image_size, tuple(spec.mean), tuple(spec.std))
    images = torch.cat([data.split(s).images for s in splits])
    if index is not None:
        images = images[torch.as_tensor(index)]
    pooled: list[list[torch.Tensor]] = [[] for _ in chosen]
    for start in range(0, len(images), batch_size):
        for i, (_, f) in enumerate(walk_cuts(model, chosen, preprocess(images[start:start + batch_size]))):
            pooled[i].append(f.mean(tuple(range(2, f.ndim))))
    return chosen, [torch.cat(p).double().numpy() for p in pooled]


def probe_predictions(x: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Leave-one-out predictions ``(images, outputs)`` of a ridge-regression probe on standardised features ``x``.

    The probe regresses the (one-hot) labels; its leave-one-out predictions come in closed form from one SVD, so
    every image is scored by a probe that did not see it, with no folds and no randomness. The penalty is chosen
    per cut from ``LAMBDAS`` by the leave-one-out squared error (as ``RidgeCV`` does).
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    n = len(x)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    t = torch.as_tensor(_targets(y, task))
    t = t - t.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)  # torch's: numpy's BLAS threads thrash on a busy machine
    projected = u.T @ t
    best, best_error = t, float("inf")
    for lam in LAMBDAS:
        shrink = s ** 2 / (s ** 2 + lam * n)
        leverage = (u ** 2) @ shrink + 1 / n  # diagonal of the hat matrix, intercept included
        residual = (t - u @ (shrink[:, None] * projected)) / (1 - leverage)[:, None]
        error = float((residual ** 2).sum())
        if error < best_error:
            best, best_error = t - residual, error
    return best.numpy()


def standard_error(y: np.ndarray, predictions: np.ndarray, task: str, metric: str, rounds: int = 200) -> float:
    """Bootstrap standard error of :func:`score` over the images (seeded, so the estimate is repeatable)."""
    rng = np.random.default_rng(0)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        try:
            values.append(score(y[idx], predictions[idx], task, metric))
        except DataError:  # a resample with a single class
            continue
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _targets(y: np.ndarray, task: str) -> np.ndarray:
    if task == "multilabel":
        return y.astype(np.float64)
    if task == "binary" or int(y.max()) == 1:
        return (y == 1).astype(np.float64)[:, None]
    return np.eye(int(y.max()) + 1)[y]


def score(y: np.ndarray, predictions: np.ndarray, task: str, metric: str) -> float:
    """Mean one-vs-rest ``metric`` over the probe's output columns (one column for binary tasks)."""
    measure = roc_auc_score if metric == "auroc" else average_precision_score
    truth = y if task == "multilabel" else (_targets(y, task) > 0)
    values = [measure(truth[:, j], predictions[:, j]) for j in range(truth.shape[1]) if 0 < truth[:, j].sum() < len(y)]
    if not values:
        raise DataError("--cut auto needs training+validation images of at least two classes.")
    return float(np.mean(values))


def sample(y: np.ndarray, limit: int, task: str) -> np.ndarray | None:
    """Indices of a seeded sample of ``limit`` images, stratified by class (multi-label: uniform), or ``None`` when
    there are no more than ``limit``. The probe's scores settle well before the set is exhausted, while the forward
    pass and the SVD grow with every image: on 5,000-6,000 images the full estimate took 62-98 s, 15-18% of a
    truncated run."""
    if len(y) <= limit:
        return None
    rng = np.random.default_rng(0)
    if task == "multilabel":
        return np.sort(rng.choice(len(y), limit, replace=False))
    classes, counts = np.unique(y, return_counts=True)
    take = np.maximum(1, np.floor(counts * limit / len(y))).astype(int)
    picked = [rng.choice(np.flatnonzero(y == c), min(k, n), replace=False) for c, k, n in zip(classes, take, counts)]
    return np.sort(np.concatenate(picked))


def estimate_cut(backbone: str, data: ImageDataset, image_size: int, *, weights: str | dict = "imagenet",
                 metric: str = "auroc", levels: tuple[str, ...] = LEVELS, one_se: bool = True,
                 limit: int = MAX_IMAGES, volume: str | None = None) -> AutoCut:
    """Score every cut of ``backbone`` (of the given ``levels``) on ``data``'s train+val images and pick one.

    Args:
        weights: the pretrained weights the fine-tuning would start from (``"imagenet"`` or a file).
        metric: ``auroc`` or ``auprc`` of the probe.
        one_se: pick the shallowest cut whose score is within one (bootstrap) standard error of the best score,
            the one-standard-error rule: scores closer than that are not told apart by the data, and the
            shallower cut gives the smaller model. Otherwise pick the best score.
        limit: score a stratified sample of this many train+val images when there are more (:func:`sample`).
        volume: for volume data, the 2D-to-3D conversion of the backbone (acs, i3d, 2.5d).
    """
    if metric not in METRICS:
        raise ConfigError(f"--cut auto scores cuts by auroc or auprc, not {metric!r}.")
    if weights in (None, "none", "random"):
        raise ConfigError("--cut auto scores pretrained features; it cannot be used with --weights none.")
    if isinstance(weights, SourceRun):
        raise ConfigError(f"--cut auto scores every cut of the pretrained backbone, but the source run {weights.path} "
                          f"kept only its bottom (cut {weights.spec.cut!r}); give --cut at or before that.")
    start = time.perf_counter()
    y = torch.cat([data.train.labels, data.val.labels]).numpy()
    index = sample(y, limit, data.task)
    cuts, features = pooled_features(backbone, data, image_size, weights=weights, levels=levels, index=index,
                                     volume=volume)
    if index is not None:
        y = y[index]
    scores, predictions = [], []
    for cut, x in zip(cuts, features):
        predictions.append(probe_predictions(x, y, data.task))
        scores.append(CutScore(cut.name, cut.level, x.shape[1], score(y, predictions[-1], data.task, metric)))
    best = max(range(len(scores)), key=lambda i: scores[i].score)  # the first (shallowest) of equal scores
    tolerance = standard_error(y, predictions[best], data.task, metric) if one_se else 0.0
    pick = next(s for s in scores if s.score >= scores[best].score - tolerance)
    return AutoCut(pick.cut, scores[best].cut, tolerance, metric, scores, len(y), image_size,
                   time.perf_counter() - start, sampled=index is not None)


def estimate_for(cfg: TrainConfig, metric: str = "auroc") -> AutoCut:
    """:func:`estimate_cut` on ``cfg``'s data, backbone, image size and pretrained weights: the estimate a grid or
    a search makes once for all its runs."""
    data = load_data(cfg)
    return estimate_cut(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg), metric=metric,
                        volume=volume_of(cfg, data))
