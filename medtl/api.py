"""The Python API; the command line is a thin layer over these functions."""
from __future__ import annotations

import json
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .artifacts import (atomic_write, load_model, new_run_dir, remove_partial_writes, run_lock, save_model, write_csv,
                        write_json)
from .backbones import backbone_cuts, create_backbone, get_spec
from .backbones.weights import read_state_dict
from .config import TrainConfig
from .data import SPLITS, ImageDataset, Preprocess, load_dataset
from .data.splits import resplit
from .deploy.card import MODEL_CARD, model_card
from .deploy.predict import with_tta
from .errors import ConfigError, DataError, MedtlWarning
from .evaluation import classification_metrics, count_macs, count_parameters, latency_ms, predictions_table
from .evaluation.threshold import run_operating_point
from .model import Classifier, build_classifier
from .strategies import Strategy, get_strategy
from .training import CHECKPOINT, Trainer, load_checkpoint, predict, seed_everything

SKIPPED_FILES = "skipped_files.txt"


@dataclass
class RunResult:
    """What :func:`train` returns: test metrics (plus validation metrics of the selected epoch), the model."""

    metrics: dict
    model: Classifier
    run_dir: Path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} is not available here ({torch.cuda.device_count()} CUDA GPU(s)); use "
                          "--device cpu or auto.")
    return device


def load_data(cfg: TrainConfig) -> ImageDataset:
    data = load_dataset(cfg.data, root=cfg.data_root, image_size=cfg.image_size, split=tuple(cfg.split), seed=cfg.seed,
                        skip_bad_images=cfg.skip_bad_images)
    if cfg.resplit is not None:
        data = resplit(data, tuple(cfg.split), cfg.resplit)
    check_splits(data)
    if len(data.train) < cfg.batch_size:
        warnings.warn(f"the training split has {len(data.train)} images, fewer than the batch size {cfg.batch_size}; "
                      f"each epoch is one batch of {len(data.train)}.", MedtlWarning, stacklevel=2)
    return data


def check_splits(data: ImageDataset) -> None:
    """Fail before training when a split cannot be trained on or scored."""
    if len(data.train) < 2:
        raise DataError(f"{data.name}: the training split has {len(data.train)} image(s); training needs at least 2 "
                        "(BatchNorm cannot learn from one).")
    if data.task == "multilabel":
        return
    present = set(data.train.labels.unique().tolist())
    missing = [data.classes[i] for i in range(data.num_classes) if i not in present]
    if missing:
        raise DataError(f"{data.name}: class(es) {missing} have no training images; add some or drop the class.")
    for name in ("val", "test"):
        if len(data.split(name).labels.unique()) < 2:
            raise DataError(
                f"{data.name}: the {name} split holds a single class, so AUROC/AUPRC are undefined; "
                "give it images of every class (or let medtl make a stratified split)."
            )


def report_skipped(data: ImageDataset, run_dir: Path) -> None:
    """List the files --skip-bad-images left out, in ``skipped_files.txt`` and as a warning."""
    path = run_dir / SKIPPED_FILES
    atomic_write(path, "".join(f"{line}\n" for line in data.skipped))
    shown = "\n  ".join(data.skipped[:20]) + ("\n  ..." if len(data.skipped) > 20 else "")
    warnings.warn(f"skipped {len(data.skipped)} unreadable image file(s) (listed in {path}):\n  {shown}",
                  MedtlWarning, stacklevel=2)


def model_weights(cfg: TrainConfig) -> str | dict[str, torch.Tensor]:
    """``--weights`` as the model builder takes it; a pickle file is read here, and only if the user trusts it."""
    if cfg.trust_pickle and cfg.weights not in ("imagenet", "none", "random"):
        return read_state_dict(cfg.weights, trust_pickle=True)
    return cfg.weights


def make_strategy(cfg: TrainConfig) -> Strategy:
    cut = cfg.cut
    if cfg.strategy == "truncated" and cut is None:
        cut = get_spec(cfg.backbone).default_cut
    return get_strategy(cfg.strategy, cut=cut, freeze_to=cfg.freeze_to, layer_decay=cfg.layer_decay,
                        pretrained_lr_scale=cfg.pretrained_lr_scale, slim_from=cfg.slim_from, shrink=cfg.shrink,
                        probe_epochs=cfg.probe_epochs)


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, run_dir: str | Path | None = None,
          verbose: bool = True, **options) -> RunResult:
    """Train one model and evaluate it once on the test split.

    Args:
        config: a :class:`TrainConfig`; ``options`` override its fields (``medtl.train(cut="layer3")``).
        resume: a run directory to continue from its last checkpoint (its saved config is used).
        run_dir: write the run exactly here (created if missing) instead of a new timestamped directory under
            ``out``; a grid (``medtl compare``) uses it to find its runs again.
    """
    with ExitStack() as held:
        if resume is not None:
            run_dir = Path(resume)
            if not (run_dir / "config.yaml").is_file():
                raise ConfigError(f"{run_dir} is not a medtl run directory (no config.yaml); nothing to resume.")
            held.enter_context(run_lock(run_dir))
            if not (run_dir / CHECKPOINT).is_file():
                raise ConfigError(f"{run_dir} stopped before its first epoch ended, so there is no {CHECKPOINT} to "
                                  f"resume from; start it again with `medtl train --config {run_dir / 'config.yaml'}`.")
            cfg = TrainConfig.load(run_dir / "config.yaml").validate()
            state = load_checkpoint(run_dir)
            remove_partial_writes(run_dir)
        else:
            cfg = TrainConfig.from_dict({**(config or TrainConfig()).to_dict(), **options}).validate()
            state = None
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        generator = seed_everything(cfg.seed)
        device = resolve_device(cfg.device)
        strategy = make_strategy(cfg)
        data = load_data(cfg)
        autocut = None
        if cfg.cut == "auto":  # estimate the cut from one forward pass; cfg.cut becomes the pick
            from .analysis.autocut import resolve_auto_cut

            autocut = resolve_auto_cut(cfg, data, model_weights(cfg), verbose)
            strategy = strategy.with_params(cut=autocut.pick)
        # A resumed model takes every weight from the checkpoint: the pretrained ones need not (and must not) be read.
        weights = "none" if state is not None else model_weights(cfg)
        model = strategy.build(cfg.backbone, data.num_classes, weights=weights, in_chans=data.in_chans,
                               image_size=cfg.image_size, head=cfg.head, classes=data.classes, task=data.task)
        if resume is None and run_dir is not None:
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            held.enter_context(run_lock(run_dir))
            cfg.save(run_dir / "config.yaml")
        elif resume is None:
            name = cfg.name or f"{Path(data.name).stem}-{cfg.backbone}-{strategy.name}-{model.spec.cut}-s{cfg.seed}"
            run_dir = new_run_dir(cfg.out, name)
            held.enter_context(run_lock(run_dir))
            cfg.save(run_dir / "config.yaml")
        if data.skipped:
            report_skipped(data, run_dir)
        if autocut is not None:
            write_json(run_dir / "autocut.json", autocut.to_dict())
        if verbose:
            print(f"run {run_dir}\n{describe(model, strategy, data)}", flush=True)
        start = time.perf_counter()
        fit = Trainer(cfg, device, verbose).fit(model, strategy, data, run_dir, generator, resume=state)
        model.load_state_dict(fit.best_state)
        metrics = finish(model, data, cfg, run_dir, fit.history, fit.best_epoch, time.perf_counter() - start)
        if verbose:
            print(summary(metrics), flush=True)
        return RunResult(metrics, model.cpu().eval(), run_dir)


def describe(model: Classifier, strategy: Strategy, data: ImageDataset) -> str:
    spec = model.spec
    return (f"data {data.name}: {len(data.train)}/{len(data.val)}/{len(data.test)} images, {data.num_classes} classes "
            f"({data.task}), {data.in_chans} channel(s)\nmodel {spec.backbone} cut at {spec.cut} ({strategy.name}), "
            f"{count_parameters(model):,} parameters ({count_parameters(model, True):,} trainable), "
            f"{spec.image_size} px, {spec.head} head")


def finish(model: Classifier, data: ImageDataset, cfg: TrainConfig, run_dir: Path, history: list[dict],
           best_epoch: int, seconds: float) -> dict:
    """Evaluate the selected model once on the test split and write every artefact of the run."""
    spec = model.spec
    plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
    test_prob, _ = predict(model, data.test.images, plain, data.task, channels_last=cfg.channels_last,
                           precision=cfg.precision)
    test = classification_metrics(data.test.labels.numpy(), test_prob, data.task, split="test")
    val_prob, _ = predict(model, data.val.images, plain, data.task, channels_last=cfg.channels_last,
                          precision=cfg.precision)
    operating = run_operating_point(data.val.labels.numpy(), val_prob, data.test.labels.numpy(), test_prob, data.task,
                                    cfg.target_sensitivity)
    spec.threshold, spec.read_size = operating.get("threshold"), data.train.images.shape[-1]
    best = next(row for row in history if row["epoch"] == best_epoch)
    model.cpu()
    metrics = {
        **{f"test_{k}": v for k, v in test.items()},
        **operating,
        **{k: v for k, v in best.items() if k.startswith("val_")},
        "best_epoch": best_epoch, "epochs_run": history[-1]["epoch"],
        "parameters": count_parameters(model), "trainable_parameters": count_parameters(model, True),
        "macs": count_macs(model, spec.in_chans, spec.image_size),
        "train_seconds": seconds, "backbone": spec.backbone, "cut": spec.cut, "strategy": cfg.strategy,
        "data": data.name, "seed": cfg.seed, "data_source": data.source,
        "split_counts": {name: data.class_counts(name) for name in SPLITS},
        "cpu_latency_ms": latency_ms(model, spec.in_chans, spec.image_size),
        "cpu_latency_threads": torch.get_num_threads(), "versions": {"medtl": __version__, "torch": torch.__version__},
    }
    write_csv(run_dir / "history.csv", history)
    write_csv(run_dir / "predictions_test.csv", predictions_table(data.test.labels.numpy(), test_prob, data.task,
                                                                  data.classes, getattr(data.test, "ids", None)))
    save_model(model, run_dir)
    write_json(run_dir / "metrics.json", metrics)
    atomic_write(run_dir / MODEL_CARD, model_card(run_dir))
    return metrics


def summary(metrics: dict) -> str:
    return (f"test AUROC {metrics['test_auroc']:.4f}  AUPRC {metrics['test_auprc']:.4f}  "
            f"accuracy {metrics['test_accuracy']:.4f}  balanced accuracy {metrics['test_balanced_accuracy']:.4f}  "
            f"parameters {metrics['parameters']:,}  MACs {metrics['macs'] / 1e6:.1f}M  "
            f"(best epoch {metrics['best_epoch']}, {metrics['train_seconds']:.0f}s)")


def evaluate(run: str | Path, data: str | None = None, *, data_root: str | None = None, split: str = "test",
             out: str | Path | None = None, tta: str = "none") -> dict:
    """Score a saved model on a split of ``data`` (default: the data set it was trained on); ``tta="hflip"``
    averages the probabilities of each image and its horizontal mirror."""
    run = Path(run)
    model = load_model(run)
    spec = model.spec
    if data is None:
        saved = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        cfg = TrainConfig.load(run / "config.yaml") if (run / "config.yaml").is_file() else TrainConfig()
        data, data_root = saved.get("data", cfg.data), data_root or cfg.data_root
    dataset = load_dataset(data, root=data_root, image_size=spec.image_size)
    if spec.classes and dataset.classes != spec.classes:
        raise DataError(f"{data} has classes {dataset.classes}, the model was trained on {spec.classes}.")
    if dataset.in_chans != spec.in_chans:
        raise DataError(f"{data} has {dataset.in_chans}-channel images, the model expects {spec.in_chans}.")
    chosen = dataset.split(split)
    plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
    prob = with_tta(lambda images: predict(model, images, plain, dataset.task)[0], chosen.images, tta)
    metrics = classification_metrics(chosen.labels.numpy(), prob, dataset.task, split=split)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / f"predictions_{split}.csv", predictions_table(chosen.labels.numpy(), prob, dataset.task,
                                                                      dataset.classes, getattr(chosen, "ids", None)))
        write_json(out / f"metrics_{split}.json", metrics)
    return metrics


def cuts(backbone: str, num_classes: int = 2, image_size: int = 224, in_chans: int = 3, head: str = "avg",
         macs: bool = True) -> list[dict]:
    """Every cut point of ``backbone``: level, feature shape, kept parameters (head included) and MACs."""
    rows = []
    for cut in backbone_cuts(create_backbone(backbone, None, in_chans)[0]):
        model = build_classifier(backbone, num_classes, cut=cut.name, weights=None, in_chans=in_chans,
                                 image_size=image_size, head=head)
        with torch.no_grad():
            shape = tuple(model.eval().trunk(torch.zeros(1, in_chans, image_size, image_size)).shape[1:])
        rows.append({
            "cut": cut.name, "level": cut.level, "feature_shape": "x".join(map(str, shape)),
            "parameters": count_parameters(model),
            **({"macs": count_macs(model, in_chans, image_size)} if macs else {}),
        })
    return rows
