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
from ..evaluation import classification_metrics
from ..model import Classifier
from ..strategies import Strategy

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


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step cosine decay with linear warm-up, a per-epoch plateau schedule, or a constant rate."""
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=5)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one sample joins the previous one (BatchNorm needs two)."""
    chunks = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, preprocess: Preprocess, task: str, batch_size: int = 256,
            channels_last: bool = False) -> tuple[np.ndarray, torch.Tensor]:
    """Class probabilities (and logits) for ``images`` in eval mode, without autograd."""
    model.eval()
    logits = []
    for start in range(0, len(images), batch_size):
        x = preprocess(images[start:start + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits.append(model(x).float())
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
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        train_x, train_y = data.train.images.to(device), data.train.labels.to(device)
        val_x = data.val.images.to(device)
        spec = model.spec
        augment = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=cfg.augment,
                             scale=tuple(cfg.crop_scale))
        plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
        loss_fn = make_loss(data, cfg, device)
        optimizer = make_optimizer(strategy.param_groups(model, cfg.lr), cfg)
        steps = len(batches(len(train_x), cfg.batch_size, torch.Generator().manual_seed(0)))
        schedule = make_schedule(optimizer, cfg, steps)
        result = FitResult()
        best_key: tuple[float, float] | None = None
        bad_epochs, first_epoch = 0, 1
        if resume is not None:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
            schedule.load_state_dict(resume["schedule"])
            generator.set_state(resume["generator"])
            torch.set_rng_state(resume["torch_rng"])
            result.history, result.best_epoch, result.best_state = resume["history"], resume["best_epoch"], resume["best_state"]
            best_key = tuple(resume["best_key"]) if resume["best_key"] is not None else None
            bad_epochs, first_epoch = resume["bad_epochs"], resume["epoch"] + 1

        for epoch in range(first_epoch, cfg.epochs + 1):
            start = time.perf_counter()
            strategy.train_mode(model)
            order = batches(len(train_x), cfg.batch_size, generator)
            bar = tqdm(order, desc=f"epoch {epoch}/{cfg.epochs}", disable=not self.verbose, leave=True,
                       dynamic_ncols=True, mininterval=0.5)
            total_loss, seen = 0.0, 0
            for idx in bar:
                idx = idx.to(device)
                x = augment(train_x[idx], generator=generator)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = train_y[idx]
                loss = loss_fn(model(x), y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}; lower --lr.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if cfg.schedule != "plateau":
                    schedule.step()
                total_loss += loss.item() * len(idx)
                seen += len(idx)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
            val_prob, val_logits = predict(model, val_x, plain, data.task, channels_last=cfg.channels_last)
            val_loss = loss_fn(val_logits, data.val.labels.to(device)).item()
            val = classification_metrics(data.val.labels.numpy(), val_prob, data.task, split="val")
            if cfg.schedule == "plateau":
                schedule.step(val_loss)
            row = {"epoch": epoch, "train_loss": total_loss / seen, "val_loss": val_loss,
                   **{f"val_{k}": v for k, v in val.items()}, "lr": optimizer.param_groups[-1]["lr"],
                   "seconds": time.perf_counter() - start}
            result.history.append(row)
            key = (-val_loss, 0.0) if cfg.select == "loss" else (val[cfg.select], -val_loss)
            if best_key is None or key > best_key:
                best_key, bad_epochs, result.best_epoch = key, 0, epoch
                result.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_auroc=f"{val['auroc']:.4f}",
                            val_auprc=f"{val['auprc']:.4f}", best=result.best_epoch)
            bar.close()
            stop = cfg.patience > 0 and bad_epochs >= cfg.patience
            atomic_torch_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch,
                "history": result.history, "best_epoch": result.best_epoch, "best_state": result.best_state,
                "best_key": list(best_key), "bad_epochs": bad_epochs, "done": stop or epoch == cfg.epochs,
            }, run_dir / CHECKPOINT)
            if stop:
                result.stopped_early = True
                break
        return result


def load_checkpoint(run_dir: Path) -> dict:
    """The last checkpoint of a run (tensors and plain values only: loaded with ``weights_only=True``)."""
    return torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
