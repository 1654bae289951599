"""The training loop, shaped like torchvision's reference script: :func:`train_one_epoch`, :func:`evaluate` and a short
epoch loop in :meth:`Trainer.fit`. Batches are sliced from in-memory tensors and augmented in one batched call; the
epoch is selected on validation only; early stopping; a checkpoint at most every ``checkpoint_every`` seconds (and at
the end, and when interrupted) from which an interrupted run resumes exactly."""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..config import TrainConfig, parse_duration
from ..data import ImageDataset, Preprocess
from ..data.volume_augment import parse_axes
from ..errors import ConfigError
from ..evaluation import classification_metrics
from ..inference import autocast, predict, to_device
from ..model import Classifier
from ..rundir import Checkpoint, RunDir
from ..progress import progress
from ..strategies import Strategy
from . import distributed
from .cache import PrefixCache
from .device import check_precision, data_home, grad_scaler
from .health import CHANCE_EPOCHS, check_finite, warn_if_at_chance
from .recipe import resolve as resolve_recipe
from .recipe import size_at

log = logging.getLogger("medtl")


def make_loss(data: ImageDataset, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """Cross-entropy (optionally class-weighted by inverse training frequency) or BCE for multi-label."""
    labels = data.train.labels
    if data.task == "multilabel":
        pos_weight = None
        if cfg.class_weights:
            pos = labels.sum(0).clamp(min=1)
            pos_weight = ((len(labels) - pos) / pos).to(device)
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    weight = None
    if cfg.class_weights:
        counts = torch.bincount(labels, minlength=data.num_classes).clamp(min=1).float()
        weight = (counts.sum() / (len(counts) * counts)).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def make_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, restart_epoch: int = 0):
    """Per-step cosine decay with linear warm-up, a per-epoch plateau schedule, or a constant rate.

    With ``restart_epoch`` (LP-FT's probe epochs) the cosine runs twice: once over the probe, then afresh, warm-up
    included, over the fine-tuning: thawing the trunk starts a new optimisation, and entering it at the probe's
    full rate would distort the pretrained features the probe was meant to protect (Kumar et al. 2022)."""
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=5)
    total = max(1, cfg.epochs * steps_per_epoch)
    restart = min(restart_epoch * steps_per_epoch, total - 1)

    def cosine(step: int, length: int) -> float:
        warmup = min(round(cfg.warmup_epochs * steps_per_epoch), length - 1)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, length - warmup)))

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        return cosine(step, restart) if step < restart else cosine(step - restart, total - restart)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def num_batches(n: int, batch_size: int) -> int:
    """Batches per epoch, as :func:`batches` makes them."""
    full, rest = divmod(n, batch_size)
    return full + int(rest > 1 or full == 0)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one sample joins the previous one (BatchNorm needs two)."""
    chunks = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        last = chunks.pop()
        chunks[-1] = torch.cat([chunks[-1], last])
    return chunks


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict | None = None
    stopped_early: bool = False
    interrupted: bool = False  # a stop was asked for during the last epoch: the run is complete, the caller stops


@dataclass
class Session:
    """Everything one training run holds between epochs: the model, its optimisation state, the data on its device,
    and the bookkeeping of model selection. A checkpoint is this, minus what can be rebuilt from the config."""

    model: Classifier
    net: nn.Module  # the model, or its torch.compile'd wrapper (same parameters)
    strategy: Strategy
    data: ImageDataset
    optimizer: torch.optim.Optimizer
    schedule: object
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    augment: Preprocess
    plain: Preprocess
    cache: PrefixCache
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    home: torch.device
    generator: torch.Generator
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_key: tuple[float, float] | None = None
    best_state: dict | None = None
    best_saved: bool = False  # best_state is on disk (best-e<N>.safetensors)
    bad_epochs: int = 0


def train_one_epoch(s: Session, cfg: TrainConfig, device: torch.device, epoch: int, frozen: int, bar) -> float:
    """One pass over the shuffled training split; returns the mean training loss."""
    features = None if cfg.augment else s.cache.get("train", s.train_x, frozen)
    total, seen, share = 0.0, 0, distributed.share()
    for idx in batches(len(s.train_x), cfg.batch_size, s.generator):
        idx = idx.to(device)
        if features is not None:
            x, first = features[idx], frozen
        else:
            x, first = s.augment(to_device(s.train_x[idx.to(s.home)], device), generator=s.generator), 0
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.precision):  # under torchrun, this process's share of the batch
            loss = s.loss_fn(s.net(x[share], first), s.train_y[idx][share]) + s.strategy.penalty(s.model, epoch)
        check_finite(loss, "the training loss", epoch, cfg.lr)
        s.optimizer.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.optimizer)
        s.scaler.update()
        if cfg.schedule != "plateau":
            s.schedule.step()
        total += loss.item() * len(idx)
        seen += len(idx)
        bar.update(1)
        bar.set_postfix(loss=f"{total / seen:.4f}", **_last_val(s.history), refresh=False)
    return total / seen


def evaluate(s: Session, cfg: TrainConfig, device: torch.device, epoch: int, frozen: int) -> dict:
    """Validation loss and metrics of the current model (cached frozen-prefix features when there are any)."""
    features = s.cache.get("val", s.val_x, frozen)
    prob, logits = predict(s.net, s.val_x if features is None else features, s.plain, s.data.task,
                           channels_last=cfg.channels_last, start=0 if features is None else frozen,
                           precision=cfg.precision)
    check_finite(logits, "the validation outputs", epoch, cfg.lr)
    loss = s.loss_fn(logits, s.data.val.labels.to(device)).item()
    metrics = classification_metrics(s.data.val.labels.numpy(), prob, s.data.task, split="val")
    return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items()}}


def _last_val(history: list[dict]) -> dict:
    return {"val_auroc": f"{history[-1]['val_auroc']:.4f}"} if history else {}


class Interrupt:
    """SIGINT/SIGTERM during training: the first asks the loop to stop after the current epoch, with a checkpoint,
    so nothing finished is lost; a second stops at once (the last checkpoint on disk stays)."""

    def __init__(self):
        self.requested: str | None = None
        self.previous: dict = {}

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log.warning("%s: stopping after this epoch, with a checkpoint (send it again to stop now)",
                    self.requested)


class Paused(Exception):
    """``Trainer.fit``'s ``report`` asked to stop after ``epoch``: the run is checkpointed there, unfinished, and
    resumes from that epoch (a scheduler's rung: successive halving trains candidates in steps)."""

    def __init__(self, epoch: int):
        super().__init__(f"paused after epoch {epoch}")
        self.epoch = epoch


class Trainer:
    """Trains a classifier built by a strategy; all options come from a :class:`TrainConfig`, which :meth:`fit`
    completes first (:meth:`resolved`), so a config built in Python trains as the same options do on the command
    line."""

    def __init__(self, cfg: TrainConfig, device: torch.device, verbose: bool = True):
        self.cfg = cfg
        self.device = device
        self.verbose = verbose

    def fit(self, model: Classifier, strategy: Strategy, data: ImageDataset, run: RunDir, generator: torch.Generator,
            resume: tuple[Checkpoint, dict] | None = None, fingerprints: dict | None = None,
            report: Callable[[dict], bool] | None = None) -> FitResult:
        """``report(row)`` sees every epoch's history row (restored ones again after a resume, so a scheduler that
        restarts a run sees its whole history); when it returns False the run checkpoints and raises :class:`Paused`."""
        cfg = self.cfg = self.resolved(model, data)
        s = self.session(model, strategy, data, generator)
        first = 1
        if resume is not None:
            first = self.restore(s, *resume) + 1
            run.write_history(s.history)  # rows of epochs after the checkpoint are trained again
            for row in s.history if report else ():
                report(row)
        steps = num_batches(len(s.train_x), cfg.batch_size)
        bar = progress(total=(cfg.epochs - first + 1) * steps, disable=not self.verbose, dynamic_ncols=True,
                   mininterval=0.5, unit="step")
        last_save, stop = time.monotonic(), False
        deadline = last_save + parse_duration(cfg.time_limit) if cfg.time_limit else math.inf
        with Interrupt() as interrupt, bar:
            for epoch in range(first, cfg.epochs + 1):
                began = time.perf_counter()
                bar.set_description(f"epoch {epoch}/{cfg.epochs}")
                frozen = strategy.train_mode(model, epoch)
                size = size_at(epoch, cfg.epochs, cfg.start_size, cfg.image_size)
                s.augment = s.augment.resized(size)
                grown = size == cfg.image_size  # early stopping waits for the size the model is scored at
                if epoch == strategy.probe_epochs + 1 or grown and size_at(epoch - 1, cfg.epochs, cfg.start_size,
                                                                          cfg.image_size) != size:
                    s.bad_epochs = 0  # fine-tuning starts (after any linear probe), or the final size: patience afresh
                train_loss = train_one_epoch(s, cfg, self.device, epoch, frozen, bar)
                val = evaluate(s, cfg, self.device, epoch, frozen)
                if cfg.schedule == "plateau":
                    s.schedule.step(val["val_loss"])
                row = {"epoch": epoch, "train_loss": train_loss, **val, "lr": s.optimizer.param_groups[-1]["lr"],
                       "seconds": time.perf_counter() - began, **({"image_size": size} if cfg.start_size else {})}
                self.select(s, row)
                run.append_history(row)
                bar.set_postfix(loss=f"{train_loss:.4f}", **_last_val(s.history), refresh=False)  # this epoch's
                pause = report is not None and not report(row)
                if epoch == CHANCE_EPOCHS < cfg.epochs:
                    warn_if_at_chance(s.history, f"for the first {CHANCE_EPOCHS} epochs")
                stop = cfg.patience > 0 and s.bad_epochs >= cfg.patience and epoch > strategy.probe_epochs and grown
                if not stop and epoch < cfg.epochs and time.monotonic() >= deadline:
                    log.warning("the %s time limit is spent after epoch %d of %d (the machine is slower than measured "
                                "before training): stopping here, with the best epoch so far", cfg.time_limit, epoch,
                                cfg.epochs)
                    stop = True
                done = stop or epoch == cfg.epochs
                if done or pause or interrupt.requested or time.monotonic() - last_save >= cfg.checkpoint_every:
                    self.save(s, run, epoch, done, fingerprints or {})
                    last_save = time.monotonic()
                if interrupt.requested and not done:
                    raise KeyboardInterrupt
                if pause and not done:
                    raise Paused(epoch)
                if stop:
                    break
        warn_if_at_chance([row for row in s.history if row["epoch"] == s.best_epoch], "at the selected epoch")
        return FitResult(s.history, s.best_epoch, s.best_state, stop, interrupt.requested is not None)

    def resolved(self, model: Classifier, data: ImageDataset) -> TrainConfig:
        """The config as the loop runs it: the epochs, patience and warm-up it leaves open filled in by the recipe
        (:func:`~medtl.training.recipe.resolve`, the one place of those rules; ``medtl train`` resolves earlier, from a
        measured epoch, and resolving again changes nothing), and the image size the model was built for."""
        cfg = self.cfg
        if cfg.image_size is None:
            cfg = replace(cfg, image_size=model.spec.image_size)
        elif cfg.image_size != model.spec.image_size:
            raise ConfigError(f"the config's image_size {cfg.image_size} is not the {model.spec.image_size} px the "
                              "model was built for; build the model at the config's size.")
        return resolve_recipe(cfg, len(data.train)).cfg

    def session(self, model: Classifier, strategy: Strategy, data: ImageDataset, generator: torch.Generator) -> Session:
        """Model on the device, data on its home, optimiser, schedule and loss as the config says."""
        cfg, device = self.cfg, self.device
        check_precision(cfg.precision, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark  # off: repeatable kernels; on: fastest ones
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        home = data_home(data.train.images.nbytes + data.val.images.nbytes, device)
        spec = model.spec
        plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
        optimizer = make_optimizer(strategy.param_groups(model, cfg.lr), cfg)
        steps = num_batches(len(data.train), cfg.batch_size)
        strategy.attach_optimizer(optimizer, steps)
        net = distributed.wrap(model, device, cfg.sync_bn)  # DistributedDataParallel under torchrun
        return Session(
            model=model, net=torch.compile(net) if cfg.compile else net, strategy=strategy, data=data,
            optimizer=optimizer, schedule=make_schedule(optimizer, cfg, steps, restart_epoch=strategy.probe_epochs),
            scaler=grad_scaler(device, cfg.precision), loss_fn=make_loss(data, cfg, device),
            augment=Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=cfg.augment,
                               scale=tuple(cfg.crop_scale), flip_axes=parse_axes(cfg.flip_axes)),
            plain=plain, cache=PrefixCache(model, plain, cfg.cache_mb, cfg.channels_last, self.verbose),
            train_x=data.train.images.to(home), train_y=data.train.labels.to(device), val_x=data.val.images.to(home),
            home=home, generator=generator)

    def select(self, s: Session, row: dict) -> None:
        """Keep the epoch if it is the best so far on validation (``--select``; ties go to the lower loss)."""
        s.history.append(row)
        select = self.cfg.select
        key = (-row["val_loss"], 0.0) if select == "loss" else (row[f"val_{select}"], -row["val_loss"])
        if s.best_key is None or key > s.best_key:
            s.best_key, s.bad_epochs, s.best_epoch = key, 0, row["epoch"]
            s.best_state = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                            for k, v in s.model.state_dict().items()}
            s.best_saved = False
        else:
            s.bad_epochs += 1

    def save(self, s: Session, run: RunDir, epoch: int, done: bool, fingerprints: dict) -> None:
        run.save_checkpoint(Checkpoint(
            epoch=epoch, model=s.model.state_dict(), optimizer=s.optimizer.state_dict(),
            schedule=s.schedule.state_dict(), scaler=s.scaler.state_dict(), generator=s.generator.get_state(),
            torch_rng=torch.get_rng_state(), history=s.history, best_epoch=s.best_epoch,
            best_key=list(s.best_key), bad_epochs=s.bad_epochs, done=done, config=fingerprints.get("config", {}),
            data=fingerprints.get("data", {})), None if s.best_saved else s.best_state)
        s.best_saved = True

    def restore(self, s: Session, state: Checkpoint, best: dict) -> int:
        """Continue from ``state``; returns the last epoch it finished (all epochs, when it had finished)."""
        s.model.load_state_dict(state.model)
        s.optimizer.load_state_dict(state.optimizer)
        s.schedule.load_state_dict(state.schedule)
        s.scaler.load_state_dict(state.scaler)
        s.generator.set_state(state.generator)
        torch.set_rng_state(state.torch_rng)
        s.history, s.best_epoch, s.best_state, s.best_saved = state.history, state.best_epoch, best, True
        s.best_key = tuple(state.best_key) if state.best_key is not None else None
        s.bad_epochs = state.bad_epochs
        stopped = state.done and state.epoch < self.cfg.epochs and self.cfg.patience > 0 and \
            state.bad_epochs >= self.cfg.patience
        return self.cfg.epochs if stopped or state.epoch >= self.cfg.epochs else state.epoch
