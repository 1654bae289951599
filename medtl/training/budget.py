"""What an epoch costs on this machine, measured before training: a few real training steps (on a copy of the model,
with forked random number generators, so the run itself is unchanged) and a slice of the validation pass.

The estimate feeds ``--time-limit`` (how many epochs fit) and the run time printed before training starts. It is a
measurement of the machine as it is now: a machine that gets busier mid-run is caught by the loop's deadline."""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data import ImageDataset, Preprocess
from ..inference import predict
from ..model import Classifier
from ..strategies import Strategy
from .loop import Session, Trainer, num_batches, train_one_epoch
from .recipe import EpochCost

STEPS = 3  # timed training steps, after one untimed step (allocation, kernel selection)


def measure_epoch(model: Classifier, strategy: Strategy, data: ImageDataset, cfg: TrainConfig,
                  device: torch.device) -> EpochCost:
    """Seconds per training epoch (at ``cfg.image_size``, and at ``cfg.start_size`` when resizing) and per
    validation pass, from :data:`STEPS` timed steps and one or two evaluation batches."""
    batch = min(cfg.batch_size, len(data.train))
    steps = num_batches(len(data.train), cfg.batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        trial = copy.deepcopy(model)
        strategy.train_mode(trial, 1)
        probe_cfg = replace(cfg, epochs=cfg.epochs or 1, warmup_epochs=0, compile=False)
        s = Trainer(probe_cfg, device, verbose=False).session(trial, strategy, data, torch.Generator().manual_seed(0))
        train_s = _step_seconds(s, probe_cfg, device, batch) * steps
        start_s = None
        if cfg.start_size and cfg.start_size < cfg.image_size:
            spec = trial.spec
            small = replace(s, augment=Preprocess(cfg.start_size, tuple(spec.mean), tuple(spec.std),
                                                  augment=cfg.augment, scale=tuple(cfg.crop_scale)))
            start_s = _step_seconds(small, probe_cfg, device, batch) * steps
        val_s = _val_seconds(s, probe_cfg, data)
    return EpochCost(train_s=train_s, val_s=val_s, start_train_s=start_s)


def _step_seconds(s: Session, cfg: TrainConfig, device: torch.device, batch: int) -> float:
    """Seconds of one training step: the median of :data:`STEPS` timed steps after one untimed one (a busy machine
    makes single steps slow; the median ignores one such step)."""
    frozen = s.strategy.train_mode(s.model, 1)
    part = replace(s, train_x=s.train_x[:batch], train_y=s.train_y[:batch])
    seconds = []
    for _ in range(1 + STEPS):
        began = time.perf_counter()
        with tqdm(disable=True) as bar:
            train_one_epoch(part, cfg, device, 1, frozen, bar)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds[1:])


def _val_seconds(s: Session, cfg: TrainConfig, data: ImageDataset) -> float:
    """Seconds of one validation pass, from the first evaluation batch (or the whole split when it is one)."""
    n = len(s.val_x)
    if n == 0:
        return 0.0
    part = s.val_x[:min(n, 256)]
    began = time.perf_counter()
    predict(s.net, part, s.plain, data.task, channels_last=cfg.channels_last, precision=cfg.precision)
    return (time.perf_counter() - began) * math.ceil(n / len(part))
