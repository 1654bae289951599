"""Features of a frozen trunk prefix, computed once instead of every epoch.

A frozen prefix (linear probing, layer-wise fine-tuning, LP-FT's probe phase) runs in eval mode with fixed weights,
so its output for a given image never changes: the validation features are computed once, and the training
features too when augmentation is off. With augmentation the training crops differ every epoch, so only the
validation split is cached. The cache is bounded by ``limit_mb``; features above that bound are computed every
epoch as usual, with a note.
"""
from __future__ import annotations

import logging

import torch

from ..data import Preprocess
from ..inference import eval_batch_size, to_device
from ..model import Classifier

log = logging.getLogger("medtl")


class PrefixCache:
    """Cached outputs of the trunk's first ``prefix`` units, per split."""

    def __init__(self, model: Classifier, preprocess: Preprocess, limit_mb: float, channels_last: bool = False,
                 verbose: bool = True, batch_size: int | None = None):
        self.model = model
        self.preprocess = preprocess
        self.limit_mb = limit_mb
        self.channels_last = channels_last
        self.verbose = verbose
        self.batch_size = batch_size or eval_batch_size(preprocess.image_size)
        self.entries: dict[str, tuple[int, torch.Tensor]] = {}
        self.noted: set[str] = set()

    def get(self, split: str, images: torch.Tensor, prefix: int) -> torch.Tensor | None:
        """The first ``prefix`` trunk units' output for ``images`` (computed on first use, kept while ``prefix`` is
        unchanged), or None when nothing is frozen or it would not fit the bound. Call after
        :meth:`medtl.Strategy.train_mode`, which puts the frozen units in eval mode."""
        entry = self.entries.get(split)
        if entry is not None and entry[0] == prefix:
            return entry[1]
        self.entries.pop(split, None)
        if prefix == 0 or self.limit_mb <= 0:
            return None
        one = self._run(images[:1], prefix)
        need_mb = one.numel() * one.element_size() * len(images) / 2**20
        used_mb = sum(f.numel() * f.element_size() for _, f in self.entries.values()) / 2**20
        if used_mb + need_mb > self.limit_mb:
            if self.verbose and split not in self.noted:
                log.info(f"note: the frozen layers' {split} features need {need_mb:.0f} MiB, more than --cache-mb "
                         f"{self.limit_mb:g} allows; they are computed every epoch instead.")
                self.noted.add(split)
            return None
        features = torch.cat([self._run(images[i:i + self.batch_size], prefix)
                              for i in range(0, len(images), self.batch_size)])
        self.entries[split] = (prefix, features)
        return features

    @torch.no_grad()  # not inference_mode: the trainable layers save these tensors for their backward pass
    def _run(self, images: torch.Tensor, prefix: int) -> torch.Tensor:
        x = self.preprocess(to_device(images, next(self.model.parameters()).device))  # images may be kept on the host
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.trunk.run(x, 0, prefix)
