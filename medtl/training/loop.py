"""The training loop: batches sliced from in-memory tensors, batched augmentation, validation-only model
selection, early stopping, and an atomic checkpoint every epoch so an interrupted run resumes exactly."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..artifacts import atomic_torch_save
from ..config import TrainConfig
from ..data import ImageDataset, Preprocess, Split
from ..errors import ConfigError
from ..evaluation import classification_metrics
from ..model import Classifier
from ..strategies import Strategy
from .cache import PrefixCache
from .device import autocast, check_precision, data_home, eval_batch_size, grad_scaler, to_device
from .health import CHANCE_EPOCHS, check_finite, warn_if_at_chance

CHECKPOINT = "checkpoint.pt"


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


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
        warmup = min(cfg.warmup_epochs * steps_per_epoch, length - 1)
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


@torch.inference_mode()
def predict(model: Classifier, images: torch.Tensor, preprocess: Preprocess, task: str, batch_size: int | None = None,
            channels_last: bool = False, start: int = 0, precision: str = "fp32") -> tuple[np.ndarray, torch.Tensor]:
    """Class probabilities (and logits) for ``images`` in eval mode, without autograd; with ``start > 0``,
    ``images`` are cached features of the trunk's first ``start`` units. Batches go to the model's device."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(preprocess.image_size)
    logits = []
    for i in range(0, len(images), batch_size):
        x = to_device(images[i:i + batch_size], device)
        if start == 0:
            x = preprocess(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits.append(model(x, start).float())
    out = torch.cat(logits)
    return probabilities(out, task).cpu().numpy(), out


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict | None = None
    stopped_early: bool = False


class Trainer:
    """Trains a classifier built by a strategy; all options come from a :class:`TrainConfig`."""

    def __init__(self, cfg: TrainConfig, device: torch.device, verbose: bool = True):
        self.cfg = cfg
        self.device = device
        self.verbose = verbose

    def fit(self, model: Classifier, strategy: Strategy, data: ImageDataset, run_dir: Path,
            generator: torch.Generator, resume: dict | None = None) -> FitResult:
        cfg, device = self.cfg, self.device
        check_precision(cfg.precision, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark  # off: repeatable kernels; on: fastest ones
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if cfg.compile else model  # shares model's parameters
        home = data_home(data.train.images.nbytes + data.val.images.nbytes, device)
        train_x, train_y = data.train.images.to(home), data.train.labels.to(device)
        val_x = data.val.images.to(home)
        spec = model.spec
        augment = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=cfg.augment,
                             scale=tuple(cfg.crop_scale))
        plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
        cache = PrefixCache(model, plain, cfg.cache_mb, cfg.channels_last, self.verbose)
        loss_fn = make_loss(data, cfg, device)
        optimizer = make_optimizer(strategy.param_groups(model, cfg.lr), cfg)
        scaler = grad_scaler(device, cfg.precision)
        steps = num_batches(len(train_x), cfg.batch_size)
        schedule = make_schedule(optimizer, cfg, steps, restart_epoch=strategy.probe_epochs)
        result = FitResult()
        best_key: tuple[float, float] | None = None
        bad_epochs, first_epoch = 0, 1
        if resume is not None:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            schedule.load_state_dict(resume["schedule"])
            if "scaler" in resume:
                scaler.load_state_dict(resume["scaler"])
            generator.set_state(resume["generator"])
            torch.set_rng_state(resume["torch_rng"])
            result.history, result.best_epoch, result.best_state = resume["history"], resume["best_epoch"], resume["best_state"]
            best_key = tuple(resume["best_key"]) if resume["best_key"] is not None else None
            bad_epochs, first_epoch = resume["bad_epochs"], resume["epoch"] + 1
            if resume["done"]:  # finished (maybe stopped early) before its artefacts were written: only re-finish
                first_epoch, result.stopped_early = cfg.epochs + 1, resume["epoch"] < cfg.epochs

        for epoch in range(first_epoch, cfg.epochs + 1):
            start = time.perf_counter()
            frozen = strategy.train_mode(model, epoch)
            if epoch == strategy.probe_epochs + 1:  # fine-tuning starts (after any linear probe): patience afresh
                bad_epochs = 0
            train_features = None if cfg.augment else cache.get("train", train_x, frozen)
            order = batches(len(train_x), cfg.batch_size, generator)
            bar = tqdm(order, desc=f"epoch {epoch}/{cfg.epochs}", disable=not self.verbose, leave=True,
                       dynamic_ncols=True, mininterval=0.5)
            total_loss, seen = 0.0, 0
            for idx in bar:
                idx = idx.to(device)
                if train_features is not None:
                    x, first = train_features[idx], frozen
                else:
                    x, first = augment(to_device(train_x[idx.to(home)], device), generator=generator), 0
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                y = train_y[idx]
                with autocast(device, cfg.precision):
                    loss = loss_fn(net(x, first), y)
                check_finite(loss, "the training loss", epoch, run_dir / CHECKPOINT, cfg.lr)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if cfg.schedule != "plateau":
                    schedule.step()
                total_loss += loss.item() * len(idx)
                seen += len(idx)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
            val_features = cache.get("val", val_x, frozen)
            val_prob, val_logits = predict(net, val_x if val_features is None else val_features, plain, data.task,
                                           channels_last=cfg.channels_last, start=0 if val_features is None else frozen,
                                           precision=cfg.precision)
            check_finite(val_logits, "the validation outputs", epoch, run_dir / CHECKPOINT, cfg.lr)
            val_loss = loss_fn(val_logits, data.val.labels.to(device)).item()
            val = classification_metrics(data.val.labels.numpy(), val_prob, data.task, split="val")
            if cfg.schedule == "plateau":
                schedule.step(val_loss)
            row = {"epoch": epoch, "train_loss": total_loss / seen, "val_loss": val_loss,
                   **{f"val_{k}": v for k, v in val.items()}, "lr": optimizer.param_groups[-1]["lr"],
                   "seconds": time.perf_counter() - start}
            result.history.append(row)
            if epoch == CHANCE_EPOCHS < cfg.epochs:
                warn_if_at_chance(result.history, f"for the first {CHANCE_EPOCHS} epochs")
            key = (-val_loss, 0.0) if cfg.select == "loss" else (val[cfg.select], -val_loss)
            if best_key is None or key > best_key:
                best_key, bad_epochs, result.best_epoch = key, 0, epoch
                result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_auroc=f"{val['auroc']:.4f}",
                            val_auprc=f"{val['auprc']:.4f}", best=result.best_epoch)
            bar.close()
            stop = cfg.patience > 0 and bad_epochs >= cfg.patience and epoch > strategy.probe_epochs
            atomic_torch_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "history": result.history, "best_epoch": result.best_epoch, "best_state": result.best_state,
                "best_key": list(best_key), "bad_epochs": bad_epochs, "done": stop or epoch == cfg.epochs,
            }, run_dir / CHECKPOINT)
            if stop:
                result.stopped_early = True
                break
        warn_if_at_chance([row for row in result.history if row["epoch"] == result.best_epoch],
                          "at the selected epoch")
        return result


def load_checkpoint(run_dir: Path) -> dict:
    """The last checkpoint of a run (tensors and plain values only: loaded with ``weights_only=True``)."""
    try:
        return torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- a refused pickle and a damaged file mean the same: it cannot be used
        raise ConfigError(
            f"{run_dir / CHECKPOINT} cannot be resumed from: it is damaged or holds Python objects, which medtl never "
            f"unpickles ({type(e).__name__}). Start the run again: medtl train --config {run_dir / 'config.yaml'}"
        ) from e
