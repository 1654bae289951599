"""The three ways of training one model for one epoch that the throughput benchmark compares.

- ``MedtlEpoch``: the real ``medtl.training.Trainer.fit`` (``EPOCHS`` epochs per call: batched augmentation, the
  step, validation, metrics, and the checkpoint a run of that length writes: one, at its end). Its validation and
  checkpoint time are measured by wrapping the loop's ``predict``/``classification_metrics`` and ``Trainer.save``,
  so the training part can be reported alone.
- ``BareEpoch``: the ceiling: forward + loss + backward + optimizer step over pre-staged, pre-normalised tensors
  with the same batch sizes, model settings (memory format, precision) and optimizer.
- ``ConventionalEpoch``: what the paper's code and MedMNIST's experiment scripts do: a Dataset of PIL images with
  per-image torchvision transforms, a DataLoader with worker processes, and every epoch an evaluation of the whole
  training set plus the validation set. It uses the memory format its ``cfg`` asks for: run as-is (NCHW) it is
  the paper's loop; given medtl's channels_last it isolates the data pipeline and the evaluation policy.

Each call returns ``(images trained, seconds, extras)`` for :func:`benchmarks.common.interleave`.
"""
from __future__ import annotations

import copy
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from medtl.resolve import make_strategy
from medtl.config import TrainConfig
from medtl.data import ImageDataset, Preprocess, Split
from medtl.evaluation import classification_metrics
from medtl.model import Classifier
from medtl.rundir import RunDir
from medtl.training import Trainer, loop
from medtl.inference import autocast

SPENT: dict[str, float] = defaultdict(float)  # seconds inside the loop's wrapped calls, by phase


@contextmanager
def phase_timers():
    """Time the training loop's validation and checkpoint calls (restored on exit)."""
    wrapped = {(loop, "predict"): "validation", (loop, "classification_metrics"): "validation",
               (loop.Trainer, "save"): "checkpoint"}
    originals = {key: getattr(*key) for key in wrapped}

    def timed(fn: Callable, phase: str) -> Callable:
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                SPENT[phase] += time.perf_counter() - start
        return call

    for (owner, name), phase in wrapped.items():
        setattr(owner, name, timed(originals[owner, name], phase))
    try:
        yield
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)


def shrink(data: ImageDataset, n_train: int | None, seed: int = 0) -> ImageDataset:
    """The first ``n_train`` training images of a seeded shuffle, and validation images in the same proportion
    (so validation keeps its share of the epoch); ``None`` keeps everything."""
    if n_train is None or n_train >= len(data.train):
        return data
    gen = torch.Generator().manual_seed(seed)

    def take(split: Split, n: int) -> Split:
        idx = torch.randperm(len(split), generator=gen)[:n]
        return Split(split.images[idx], split.labels[idx])

    n_val = max(4, round(n_train * len(data.val) / len(data.train)))
    small = replace(data, train=take(data.train, n_train), val=take(data.val, n_val))
    assert len(small.val.labels.unique()) == data.num_classes, "the shrunk validation split lost a class"
    return small


def build(cfg: TrainConfig, data: ImageDataset) -> Classifier:
    """The model medtl trains for ``cfg`` (random initialisation is enough for timing)."""
    torch.manual_seed(cfg.seed)
    return make_strategy(cfg).build(cfg.backbone, data.num_classes, weights=None, in_chans=data.in_chans,
                                    image_size=cfg.image_size, head=cfg.head, classes=data.classes, task=data.task,
                                    volume=cfg.volume)


def grey_stats(model: Classifier, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = model.spec.mean, model.spec.std
    if channels == 1 and len(mean) == 3:
        return (sum(mean) / 3,), (sum(std) / 3,)
    return tuple(mean), tuple(std)


class MedtlEpoch:
    EPOCHS = 5  # per call; a default run (30 epochs, under a minute) writes one checkpoint, at its end

    def __init__(self, cfg: TrainConfig, data: ImageDataset, model: Classifier):
        self.cfg = replace(cfg, epochs=self.EPOCHS)
        self.data, self.model = data, model
        self.strategy = make_strategy(self.cfg)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.run = RunDir(tempfile.mkdtemp(prefix="medtl-bench-"))

    def __call__(self) -> tuple[float, float, dict]:
        SPENT.clear()
        trainer = Trainer(self.cfg, torch.device("cpu"), verbose=False)
        with phase_timers():
            start = time.perf_counter()
            trainer.fit(self.model, self.strategy, self.data, self.run, self.generator)
            seconds = time.perf_counter() - start
        return (self.EPOCHS * len(self.data.train), seconds,
                {"validation_s": SPENT["validation"], "checkpoint_s": SPENT["checkpoint"]})


class BareEpoch:
    def __init__(self, cfg: TrainConfig, data: ImageDataset, model: Classifier):
        self.cfg, self.model = cfg, model
        mean, std = grey_stats(model, data.in_chans)
        x = Preprocess(cfg.image_size, mean, std)(data.train.images)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        order = loop.batches(len(x), cfg.batch_size, torch.Generator().manual_seed(cfg.seed))
        self.batches = [(x[idx], data.train.labels[idx]) for idx in order]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.device = torch.device("cpu")

    def __call__(self) -> tuple[float, float, dict]:
        self.model.train()
        start = time.perf_counter()
        for x, y in self.batches:
            with autocast(self.device, self.cfg.precision):
                loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return sum(len(y) for _, y in self.batches), time.perf_counter() - start, {}


class PILImages(torch.utils.data.Dataset):
    """A torchvision-style data set: one PIL image per item, transformed on access."""

    def __init__(self, split: Split, transform: Callable):
        images = split.images.numpy()
        self.images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
        self.labels = split.labels.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


class ConventionalEpoch:
    WORKERS = 2

    def __init__(self, cfg: TrainConfig, data: ImageDataset, model: Classifier):
        self.cfg, self.data, self.model = cfg, data, model
        s = cfg.image_size
        mean, std = grey_stats(model, data.in_chans)
        norm = [T.ToTensor(), T.Normalize(mean, std)]
        train_tf = T.Compose([T.RandomResizedCrop(s, scale=tuple(cfg.crop_scale)), T.RandomHorizontalFlip(), *norm])
        eval_tf = T.Compose([T.Resize((s, s)), *norm])

        def loader(split: Split, tf: Callable, shuffle: bool) -> torch.utils.data.DataLoader:
            return torch.utils.data.DataLoader(PILImages(split, tf), batch_size=cfg.batch_size, shuffle=shuffle,
                                               num_workers=self.WORKERS)

        self.train = loader(data.train, train_tf, True)
        self.evals = {"train": loader(data.train, eval_tf, False), "val": loader(data.val, eval_tf, False)}
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _nchw(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def __call__(self) -> tuple[float, float, dict]:
        start = time.perf_counter()
        self.model.train()
        for x, y in self.train:
            loss = F.cross_entropy(self.model(self._nchw(x)), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        trained = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            for split, batches in self.evals.items():
                logits = torch.cat([self.model(self._nchw(x)) for x, _ in batches])
                labels = self.data.split(split).labels.numpy()
                classification_metrics(labels, logits.softmax(1).numpy(), self.data.task, split=split)
        end = time.perf_counter()
        return len(self.data.train), end - start, {"train_pass_s": trained - start}


def fresh_models(cfg: TrainConfig, data: ImageDataset, n: int) -> list[Classifier]:
    """``n`` identical copies of the model, one per contender, so each keeps its own optimizer state."""
    model = build(cfg, data)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return [copy.deepcopy(model) for _ in range(n)]

