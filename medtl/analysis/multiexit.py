"""The multi-exit run: an estimate of every cut that sees fine-tuning, at about the cost of one fine-tune.

The whole pretrained backbone is fine-tuned once with a light head (global average pooling + linear, the ``avg``
head of TruncatedTL) at every candidate cut, all trained together on the mean of their losses (deep supervision,
Lee et al., AISTATS 2015; the early exits of BranchyNet, Teerapittayanon et al., ICPR 2016). Each head's best
validation score over the epochs estimates what TruncatedTL cut there would reach: unlike a probe of the pretrained
features, the features under every head have adapted to the data. The network is run once per batch, so an epoch
costs one full fine-tuning epoch plus the heads (a few thousand parameters each). What it does not see: a truncated
model's bottom is trained by its own head alone, here by the heads above it too; and no augmentation is applied.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..backbones import Cut, backbone_cuts, create_backbone
from ..backbones.cuts import LEVELS
from ..backbones.volume import volume_backbone
from ..data import ImageDataset, Preprocess
from .features import cut_outputs
from .transferability import score


@dataclass
class MultiExit:
    """Per cut, the best validation score of its head over the epochs (and the epoch), and the cost."""

    cuts: list[Cut]
    widths: list[int]
    scores: list[float]
    epochs: list[int]
    seconds: float


def _loss(task: str) -> nn.Module:
    return nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss()


def _probabilities(logits: torch.Tensor, task: str) -> np.ndarray:
    """What :func:`medtl.analysis.autocut.score` reads: the positive column for binary, a column per class else."""
    if task == "multilabel":
        return torch.sigmoid(logits).numpy()
    p = torch.softmax(logits, 1).numpy()
    return p[:, 1:] if task == "binary" else p


def multi_exit_scores(backbone: str, data: ImageDataset, image_size: int, *, weights: str | dict = "imagenet",
                      levels: tuple[str, ...] = LEVELS, epochs: int = 5, lr: float = 1e-3, weight_decay: float = 1e-4,
                      batch_size: int = 64, seed: int = 0, metric: str = "auroc", volume: str | None = None
                      ) -> MultiExit:
    """Fine-tune ``backbone`` once on ``data``'s training split with a head at every cut of ``levels`` (AdamW,
    cosine schedule) and score each head on the validation split after every epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model, spec = create_backbone(backbone, weights, data.in_chans)
    chosen = [c for c in backbone_cuts(model) if c.level in levels]
    if volume is not None:
        model = volume_backbone(model, volume)
    preprocess = Preprocess(image_size, tuple(spec.mean), tuple(spec.std))
    train, val = data.train, data.val
    outputs = train.labels.shape[1] if data.task == "multilabel" else max(2, int(train.labels.max()) + 1)
    with torch.no_grad():
        model.eval()
        widths = [f.shape[1] for _, f in cut_outputs(model, chosen, preprocess(train.images[:2]))]
    heads = nn.ModuleList(nn.Linear(w, outputs) for w in widths)
    params = [p for p in model.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=min(0.3, 1 / epochs))
    loss_fn = _loss(data.task)
    y_val = val.labels.numpy()
    best = [-np.inf] * len(chosen)
    best_epoch = [0] * len(chosen)
    for epoch in range(1, epochs + 1):
        model.train()
        heads.train()
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order), batch_size):
            index = order[i:i + batch_size]
            if len(index) < 2:  # BatchNorm needs two images
                continue
            x, y = preprocess(train.images[index]), train.labels[index]
            y = y.float() if data.task == "multilabel" else y.long()
            losses = [loss_fn(head(f.mean(tuple(range(2, f.ndim)))), y)
                      for head, (_, f) in zip(heads, cut_outputs(model, chosen, x))]
            optimizer.zero_grad()
            torch.stack(losses).mean().backward()
            optimizer.step()
            schedule.step()
        model.eval()
        heads.eval()
        logits: list[list[torch.Tensor]] = [[] for _ in chosen]
        with torch.no_grad():
            for i in range(0, len(val), batch_size):
                for k, (head, (_, f)) in enumerate(zip(heads, cut_outputs(model, chosen,
                                                                            preprocess(val.images[i:i + batch_size])))):
                    logits[k].append(head(f.mean(tuple(range(2, f.ndim)))))
        for k, parts in enumerate(logits):
            value = score(y_val, _probabilities(torch.cat(parts), data.task), data.task, metric)
            if value > best[k]:
                best[k], best_epoch[k] = value, epoch
    return MultiExit(chosen, widths, [float(b) for b in best], best_epoch, time.perf_counter() - start)
