"""``--cut auto``: choose the cut from one forward pass (or one multi-exit run) instead of fine-tuning at every cut.

``--cut-estimator`` names how the cuts are scored (:data:`ESTIMATORS`): ``ridge`` (the default, below), the
transferability scores of :mod:`medtl.analysis.transferability` (``logme``, ``hscore``, ``nleep``, ``sfda``: the
best score is picked, their units have no standard error), or ``multiexit`` (:mod:`medtl.analysis.multiexit`: one
fine-tuning run with a head at every cut, each head's validation AUROC/AUPRC, the one-standard-error rule on the
validation split's noise, :mod:`medtl.evaluation.noise`). docs/guide/cut-estimators.md compares them.

The pretrained backbone sees the training and validation images once; the globally average-pooled features at
every cut (what the ``avg`` head sees) are scored by the leave-one-out AUROC (or AUPRC) of a ridge probe, and the
shallowest cut within one standard error of the best score is picked. The probe measures how linearly separable
the classes are in the *pretrained* features, so it is a proxy: fine-tuning changes the features, most at the
deepest cuts (see ``medtl analyze reuse``). docs/results/breastmnist-strategies.md gives how well it agrees with
exhaustive fine-tuning and where it does not, and how it compares with a logistic probe (validation or 5-fold) and LogME
(``benchmarks/cut_scores.py``): none of them was better at both image sizes measured; this one is deterministic,
as cheap as LogME and about 10x cheaper than the cross-validated logistic probe.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..backbones import Cut, backbone_cuts, create_backbone
from ..backbones.cuts import LEVELS
from ..backbones.volume import volume_backbone
from ..config import TrainConfig
from ..data import ImageDataset, Preprocess
from ..errors import ConfigError, DataError
from ..resolve import image_size_for, load_data, model_weights, volume_of
from ..source import SourceRun
from ..evaluation.noise import standard_error as validation_error
from .features import walk_cuts
from ..training.recipe import default_epochs
from .multiexit import multi_exit_scores
from .transferability import SCORES, label_targets, score

METRICS = ("auroc", "auprc")
ESTIMATORS = ("ridge", *SCORES, "multiexit")  # --cut-estimator; ridge: the default
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
    estimator: str = "ridge"

    def to_dict(self) -> dict:
        return asdict(self)

    def ranking(self) -> list[CutScore]:
        """The cuts from the best score down (the shallower first among equal scores)."""
        return sorted(self.scores, key=lambda s: -s.score)

    def table(self) -> str:
        what = DESCRIPTIONS[self.estimator].format(metric=self.metric.upper())
        rule = (f"the shallowest cut within {self.tolerance:.4f} (one standard error) of the best" if self.tolerance
                else "the best score")
        lines = [f"--cut auto ({self.estimator}): {what} ({self.images} "
                 f"{'train' if self.estimator == 'multiexit' else 'train+val'} images"
                 f"{' (a stratified sample)' if self.sampled else ''}, {self.image_size} px, {self.seconds:.1f}s); "
                 f"pick: {rule}"]
        lines += [f"  {s.cut:<28}{s.level:<7}{s.channels:>6} ch  {s.score:.4f}"
                  f"{'  <- pick' if s.cut == self.pick else ''}{'  (best)' if s.cut == self.best != self.pick else ''}"
                  for s in self.scores]
        return "\n".join(lines)


DESCRIPTIONS = {
    "ridge": "leave-one-out {metric} of a ridge probe on pooled pretrained features",
    "logme": "LogME evidence of the pooled pretrained features",
    "hscore": "regularised H-score of the pooled pretrained features",
    "nleep": "NLEEP of the pooled pretrained features",
    "sfda": "SFDA score of the pooled pretrained features",
    "multiexit": "validation {metric} of a head at every cut of one multi-exit fine-tuning run",
}


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
    t = torch.as_tensor(label_targets(y, task))
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
                 limit: int = MAX_IMAGES, volume: str | None = None, estimator: str = "ridge",
                 epochs: int = 5, seed: int = 0, lr: float = 1e-3, batch_size: int = 64) -> AutoCut:
    """Score every cut of ``backbone`` (of the given ``levels``) on ``data``'s train+val images and pick one.

    Args:
        weights: the pretrained weights the fine-tuning would start from (``"imagenet"`` or a file).
        metric: ``auroc`` or ``auprc`` of the probe.
        one_se: pick the shallowest cut whose score is within one (bootstrap) standard error of the best score,
            the one-standard-error rule: scores closer than that are not told apart by the data, and the
            shallower cut gives the smaller model. Otherwise pick the best score.
        limit: score a stratified sample of this many train+val images when there are more (:func:`sample`).
        volume: for volume data, the 2D-to-3D conversion of the backbone (acs, i3d, 2.5d).
        estimator: how the cuts are scored (:data:`ESTIMATORS`).
        epochs, seed, lr, batch_size: of the multi-exit run (``estimator="multiexit"``).
    """
    if estimator not in ESTIMATORS:
        raise ConfigError(f"--cut-estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}.")
    if estimator in SCORES and data.task == "multilabel":
        raise ConfigError(f"--cut-estimator {estimator} scores one class per image; for multi-label data use ridge "
                          f"or multiexit.")
    if metric not in METRICS:
        raise ConfigError(f"--cut auto scores cuts by auroc or auprc, not {metric!r}.")
    if weights in (None, "none", "random"):
        raise ConfigError("--cut auto scores pretrained features; it cannot be used with --weights none.")
    if isinstance(weights, SourceRun):
        raise ConfigError(f"--cut auto scores every cut of the pretrained backbone, but the source run {weights.path} "
                          f"kept only its bottom (cut {weights.spec.cut!r}); give --cut at or before that.")
    if estimator == "multiexit":
        return _multi_exit(backbone, data, image_size, weights, metric, levels, one_se, volume,
                           {"epochs": epochs, "seed": seed, "lr": lr, "batch_size": batch_size})
    start = time.perf_counter()
    y = torch.cat([data.train.labels, data.val.labels]).numpy()
    index = sample(y, limit, data.task)
    cuts, features = pooled_features(backbone, data, image_size, weights=weights, levels=levels, index=index,
                                     volume=volume)
    if index is not None:
        y = y[index]
    scores, best, tolerance, pick = score_cuts(cuts, features, y, data.task, metric, estimator, one_se)
    return AutoCut(pick, best, tolerance, metric, scores, len(y), image_size, time.perf_counter() - start,
                   sampled=index is not None, estimator=estimator)


def score_cuts(cuts: list[Cut], features: list[np.ndarray], y: np.ndarray, task: str, metric: str = "auroc",
               estimator: str = "ridge", one_se: bool = True) -> tuple[list[CutScore], str, float, str]:
    """Every cut's score by a one-pass ``estimator`` on its pooled ``features``; the best cut, the tolerance (ridge:
    one bootstrap standard error of the best score; the other scores have none) and the pick (the shallowest cut
    within the tolerance of the best)."""
    scores, predictions = [], []
    for cut, x in zip(cuts, features):
        if estimator == "ridge":
            predictions.append(probe_predictions(x, y, task))
            value = score(y, predictions[-1], task, metric)
        else:
            value = SCORES[estimator](x, y)
        scores.append(CutScore(cut.name, cut.level, x.shape[1], value))
    best = max(range(len(scores)), key=lambda i: scores[i].score)  # the first (shallowest) of equal scores
    tolerance = standard_error(y, predictions[best], task, metric) if one_se and predictions else 0.0
    pick = next(s for s in scores if s.score >= scores[best].score - tolerance)
    return scores, scores[best].cut, tolerance, pick.cut


def _multi_exit(backbone: str, data: ImageDataset, image_size: int, weights, metric: str, levels: tuple[str, ...],
                one_se: bool, volume: str | None, schedule: dict) -> AutoCut:
    """:func:`estimate_cut` by a multi-exit run; the tolerance is the validation metric's standard error."""
    run = multi_exit_scores(backbone, data, image_size, weights=weights, levels=levels, metric=metric, volume=volume,
                            **schedule)
    scores = [CutScore(c.name, c.level, w, s) for c, w, s in zip(run.cuts, run.widths, run.scores)]
    best = max(range(len(scores)), key=lambda i: scores[i].score)
    tolerance = validation_error(metric, scores[best].score, data.val.labels.numpy(), data.task) if one_se else 0.0
    pick = next(s for s in scores if s.score >= scores[best].score - tolerance)
    return AutoCut(pick.cut, scores[best].cut, tolerance, metric, scores, len(data.train), image_size, run.seconds,
                   estimator="multiexit")


def estimate_for(cfg: TrainConfig, metric: str = "auroc") -> AutoCut:
    """:func:`estimate_cut` on ``cfg``'s data, backbone, image size, pretrained weights and ``cut_estimator`` (a
    multi-exit run takes the run's learning rate, batch size, seed and a third of its epochs, at least 3): the
    estimate a grid or a search makes once for all its runs."""
    data = load_data(cfg)
    return estimate_cut(cfg.backbone, data, image_size_for(cfg, data), weights=model_weights(cfg), metric=metric,
                        volume=volume_of(cfg, data), estimator=cfg.cut_estimator, **multi_exit_options(cfg, data))


def multi_exit_options(cfg: TrainConfig, data: ImageDataset) -> dict:
    """The multi-exit run's schedule from the run's options."""
    epochs = cfg.epochs or default_epochs(len(data.train))
    return {"epochs": max(3, epochs // 3), "seed": cfg.seed, "lr": cfg.lr, "batch_size": cfg.batch_size}
