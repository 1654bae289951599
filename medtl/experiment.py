"""One training run, from a configuration to a finished run directory: start a new run, or resume one that was
interrupted (refused when its config or data no longer match what was checkpointed)."""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .analysis.autocut import AutoCut, estimate_cut, multi_exit_options
from .config import TrainConfig, default_of, resume_refused
from .data import ImageDataset, Preprocess
from .data.balance import warn_imbalance
from .data.check import warn_leakage
from .data.volume_augment import parse_axes
from .deploy.card import MODEL_CARD, model_card
from .errors import ConfigError, DataError, MedtlWarning
from .evaluation import (
    classification_metrics,
    count_macs,
    count_parameters,
    evidence,
    latency_ms,
    predictions_table,
    task_bytes,
    with_calibrated,
)
from .evaluation.threshold import run_operating_point
from .inference import predict
from .model import Classifier
from .provenance import provenance
from .resolve import (
    image_size_for,
    load_data,
    make_strategy,
    model_weights,
    resolve_device,
    volume_of,
    warn_small_train,
)
from .rundir import RunDir, data_fingerprint
from .source import SourceRun
from .strategies import Strategy
from .training import Trainer, distributed, seed_everything
from .training.budget import measure_epoch
from .training.recipe import resolve as resolve_recipe
from .tracking import check as check_trackers, status_of
from .tracking.run import open_tracking, run_artifacts

log = logging.getLogger("medtl")


@dataclass
class RunResult:
    """What a training run returns.

    Attributes:
        metrics: test metrics with confidence intervals, validation metrics of the selected epoch, cost and
            provenance (what `metrics.json` holds).
        model: the selected model.
        run_dir: the run directory.
        config: the resolved configuration.
    """

    metrics: dict
    model: Classifier
    run_dir: Path
    config: TrainConfig


@dataclass
class Prepared:
    """A configuration resolved into what training needs; nothing is written yet."""

    cfg: TrainConfig
    device: torch.device
    generator: torch.Generator
    data: ImageDataset
    strategy: Strategy
    autocut: AutoCut | None
    fingerprint: dict[str, str]  # of the data: what the run is trained and tested on (checkpoint, metrics.json)


def prepare(cfg: TrainConfig, verbose: bool) -> Prepared:
    """Validate, seed, load the data and resolve the strategy (and ``--cut auto``), before any file is created, so
    bad input leaves no half-made run directory."""
    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed)
    device = distributed.setup(resolve_device(cfg.device))  # under torchrun: this process's device
    strategy = make_strategy(cfg)
    check_trackers(cfg)
    data = load_data(cfg)
    if cfg.image_size is None:  # the default for the data: config.yaml records it
        cfg = replace(cfg, image_size=image_size_for(cfg, data)).validate()  # --start-size against it
        if verbose and data.is_volume:
            log.info(f"volumes: {cfg.image_size}^3 voxels (the default for {data.name}'s "
                     f"{'x'.join(map(str, data.image_shape[1:]))} volumes; set --image-size to change it)")
    if cfg.ordinal_head and (data.task == "multilabel" or data.num_classes < 3):
        raise ConfigError(f"--ordinal-head needs ordered grades, one per image, at least 3 of them; {data.name} is "
                          f"{data.task} with {data.num_classes} classes.")
    volume = volume_of(cfg, data)
    if volume is not None:  # config.yaml records the conversion; channels_last is a 2D memory format
        parse_axes(cfg.flip_axes)
        if verbose and cfg.volume is None:
            log.info(f"volumes: the 2D network is made 3D with --volume {volume} (the default; also i3d, 2.5d)")
        cfg = replace(cfg, volume=volume, channels_last=False)
    autocut = None
    if cfg.cut == "auto":  # estimate the cut from one forward pass; config.yaml records the pick
        metric = cfg.select if cfg.select in ("auroc", "auprc") else "auroc"
        autocut = estimate_cut(cfg.backbone, data, cfg.image_size, weights=model_weights(cfg), metric=metric,
                               volume=cfg.volume, estimator=cfg.cut_estimator, **multi_exit_options(cfg, data))
        if verbose:
            log.info(autocut.table())
        strategy = strategy.with_params(cut=autocut.pick)
        cfg = replace(cfg, cut=autocut.pick)
    elif cfg.strategy == "truncated" and cfg.cut is None:  # record the default cut that is trained
        cfg = replace(cfg, cut=strategy.cut)
    return Prepared(cfg, device, generator, data, strategy, autocut, data_fingerprint(data))


def start(cfg: TrainConfig, run_dir: str | Path | None = None, verbose: bool = True, report=None) -> RunResult:
    """Train a new run: in ``run_dir`` (a grid's fixed name) or a new timestamped directory under ``cfg.out``.
    ``report`` sees every epoch's history row and may pause the run (see :meth:`Trainer.fit`)."""
    p = prepare(cfg, verbose)
    weights = model_weights(p.cfg)
    model = p.strategy.build(p.cfg.backbone, p.data.num_classes, weights=weights,
                             in_chans=p.data.in_chans, image_size=p.cfg.image_size, head=p.cfg.head,
                             classes=p.data.classes, task=p.data.task, ordinal_head=p.cfg.ordinal_head,
                             volume=p.cfg.volume)
    warn_leakage(p.data)  # after every input check: leakage is a warning, bad input an error
    warn_imbalance(p.data, p.cfg.class_weights)
    warn_small_train(p.data, p.cfg)
    p = plan(p, model, verbose)
    name = p.cfg.name or f"{Path(p.data.name).stem}-{p.cfg.backbone}-{p.strategy.name}-{model.spec.cut}-s{p.cfg.seed}"
    run = distributed.one_run(lambda: RunDir.at(run_dir) if run_dir is not None else RunDir.create(p.cfg.out, name))
    with run.lock():
        run.save_config(p.cfg)
        if p.data.skipped:
            report_skipped(p.data, run)
        if p.autocut is not None:
            run.write_json(RunDir.AUTOCUT, p.autocut.to_dict())
        if isinstance(weights, SourceRun):  # recorded at the start: a resumed run reports what it started from
            run.write_json(RunDir.SOURCE, weights.provenance())
        return _fit(p, model, run, None, verbose, report)


def plan(p: Prepared, model: Classifier, verbose: bool) -> Prepared:
    """Resolve the epochs, patience and warm-up the config leaves to the recipe (and fit them into --time-limit),
    from a measured epoch when there is a budget or someone to tell the estimate to; config.yaml records the result,
    so a resumed run keeps it."""
    cost = measure_epoch(model, p.strategy, p.data, p.cfg, p.device) if verbose or p.cfg.time_limit else None
    cost = distributed.from_rank_zero(cost)
    recipe = resolve_recipe(p.cfg, len(p.data.train), cost)
    if verbose:
        log.info(recipe.note)
    return replace(p, cfg=recipe.cfg)


def resume(run_dir: str | Path, overrides: dict | None = None, verbose: bool = True, report=None) -> RunResult:
    """Continue an interrupted run from its last checkpoint (a finished one only writes its artefacts again).

    ``overrides`` may extend ``epochs`` or ``patience``, or change run-only options (threads, device, ...); any other
    option would make the result depend on when the run was interrupted, so it is refused. The checkpoint's
    fingerprints of the config and of the data must match: an edited ``config.yaml`` or changed data is refused."""
    run = distributed.view(run_dir)
    if not run.started:
        raise ConfigError(f"{run.path} is not a medtl run directory (no {RunDir.CONFIG}); nothing to resume.")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    refused = resume_refused(overrides)
    if refused:
        raise ConfigError(f"--resume continues {run.path} as it was configured; {', '.join(refused)} cannot change "
                          "mid-run (only --epochs, --patience and run options such as --threads can). Start a new run "
                          f"with `medtl train --config {run / RunDir.CONFIG}` and the new options instead.")
    with run.lock():
        if not run.resumable:
            raise ConfigError(f"{run.path} stopped before its first checkpoint, so there is nothing to resume from; "
                              f"start it again with `medtl train --config {run / RunDir.CONFIG}`.")
        saved = run.load_config()
        cfg = replace(saved, **overrides)
        state, best = run.load_checkpoint()
        changed = _changed_options(state.config, cfg)
        if changed:
            raise ConfigError(f"{run / RunDir.CONFIG} no longer matches the checkpoint it would resume: "
                              f"{'; '.join(changed)}. Restore the file, or start a new run with these options.")
        run.remove_partial_writes()
        p = prepare(cfg, verbose)
        if p.fingerprint != state.data:
            differ = [s for s in p.fingerprint if p.fingerprint[s] != state.data.get(s)]
            raise DataError(f"the data of {run.path} ({cfg.data}) changed since it was checkpointed: the "
                            f"{', '.join(differ)} split(s) hold other images or labels. Resuming would mix two data "
                            "sets; start a new run instead.")
        if cfg != saved:
            run.save_config(cfg)
        # A resumed model takes every weight from the checkpoint: the pretrained ones need not (and must not) be read.
        model = p.strategy.build(cfg.backbone, p.data.num_classes, weights="none", in_chans=p.data.in_chans,
                                 image_size=cfg.image_size, head=cfg.head, classes=p.data.classes, task=p.data.task,
                                 ordinal_head=cfg.ordinal_head, volume=p.cfg.volume)
        try:
            model.load_state_dict(state.model)
        except RuntimeError as e:
            raise ConfigError(f"{run / RunDir.CHECKPOINT} holds another model than {run / RunDir.CONFIG} describes "
                              f"({str(e).splitlines()[0]}); start a new run.") from e
        return _fit(p, model, run, (state, best), verbose, report)


def _changed_options(checkpointed: dict, cfg: TrainConfig) -> list[str]:
    """The options (other than those a resume may change) whose value differs from the checkpoint's."""
    may_change = {f.name for f in fields(TrainConfig) if f.metadata["resume"]}
    now = cfg.identity()
    # an option added since the checkpoint was written is at its default there (the behaviour it was trained with)
    then = {k: checkpointed.get(k, default_of(k)) for k in now} | checkpointed
    return [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(then))
            if k not in may_change and then.get(k) != now.get(k)]


def _fit(p: Prepared, model: Classifier, run: RunDir, state, verbose: bool, report=None) -> RunResult:
    tracker = open_tracking(p.cfg, run, state)  # --track: an observer of the epochs and the result
    try:
        result = _train(p, model, run, state, verbose, tracker.observe(report))
    except BaseException as e:
        if getattr(e, "finished", False):  # stopped as the run finished: its results are complete
            tracker.finished(run.metrics(), run_artifacts(run))
        else:
            tracker.close(status_of(e))
        if isinstance(e, KeyboardInterrupt):
            e.run = run.path if run.resumable else None  # what the command line offers to --resume
        raise
    tracker.finished(result.metrics, run_artifacts(run))
    return result


def _train(p: Prepared, model: Classifier, run: RunDir, state, verbose: bool, report=None) -> RunResult:
    if verbose:
        log.info("run %s\n%s", run.path, describe(model, p.strategy, p.data))
    fingerprints = {"config": p.cfg.identity(), "data": p.fingerprint}
    began = time.perf_counter()
    fit = Trainer(p.cfg, p.device, verbose).fit(model, p.strategy, p.data, run, p.generator, resume=state,
                                                fingerprints=fingerprints, report=report)
    model.load_state_dict(fit.best_state)
    seconds = time.perf_counter() - began
    p.strategy.train_mode(model)  # as it trained last: what trains is what a task stores beyond the shared weights
    costs = {"trainable_parameters": count_parameters(model, True), "stored_bytes": task_bytes(model)}
    model = p.strategy.merged(model)  # an adapter's updates folded into plain weights: model.json's architecture
    metrics = distributed.on_rank_zero(lambda: finish(model, p.data, p.cfg, run, fit.history, fit.best_epoch, seconds,
                                                      fingerprints["data"], costs)) or run.metrics()
    if verbose:
        log.info(summary(metrics))
    if fit.interrupted:  # asked to stop during the last epoch: the run is complete, the command (a grid) stops
        stopped = KeyboardInterrupt()
        stopped.finished = True
        raise stopped
    return RunResult(metrics, model.cpu().eval(), run.path, p.cfg)


def report_skipped(data: ImageDataset, run: RunDir) -> None:
    """List the files --skip-bad-images left out, in ``skipped_files.txt`` and as a warning."""
    path = run.write_skipped(data.skipped)
    shown = "\n  ".join(data.skipped[:20]) + ("\n  ..." if len(data.skipped) > 20 else "")
    warnings.warn(f"skipped {len(data.skipped)} unreadable image file(s) (listed in {path}):\n  {shown}",
                  MedtlWarning, stacklevel=2)


def describe(model: Classifier, strategy: Strategy, data: ImageDataset) -> str:
    spec = model.spec
    return (f"data {data.name}: {len(data.train)}/{len(data.val)}/{len(data.test)} images, {data.num_classes} classes "
            f"({data.task}), {data.in_chans} channel(s)\nmodel {spec.backbone} cut at {spec.cut} ({strategy.name}), "
            f"{count_parameters(model):,} parameters ({count_parameters(model, True):,} trainable), "
            f"{spec.image_size} px, {spec.head} head"
            + (f"\n{data.source['split_note']}" if data.source.get("split_note") else ""))


def score(model: Classifier, images: torch.Tensor, task: str, cfg: TrainConfig) -> np.ndarray:
    """Class probabilities of the selected model, computed the one way a run and ``evaluate`` both use."""
    return score_logits(model, images, task, cfg)[0]


def score_logits(model: Classifier, images: torch.Tensor, task: str, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    spec = model.spec
    plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
    prob, logits = predict(model, images, plain, task, channels_last=cfg.channels_last, precision=cfg.precision)
    return prob, logits.cpu().numpy()


def finish(model: Classifier, data: ImageDataset, cfg: TrainConfig, run: RunDir, history: list[dict],
           best_epoch: int, seconds: float, fingerprint: dict, costs: dict | None = None) -> dict:
    """Evaluate the selected model once on the test split and write every artefact of the run. ``costs``: the
    trainable parameters and bytes stored per task, counted before an adapter was merged (default: from ``model``)."""
    spec = model.spec
    test_prob, test_logits = score_logits(model, data.test.images, data.task, cfg)
    val_prob, val_logits = score_logits(model, data.val.images, data.task, cfg)
    test = classification_metrics(data.test.labels.numpy(), test_prob, data.task, split="test")
    stats, calibrated_prob, spec.temperature = evidence(
        data.test.labels.numpy(), test_prob, test_logits, data.val.labels.numpy(), val_logits, data.task,
        data.classes, ordinal=cfg.ordinal or cfg.ordinal_head, bootstrap=cfg.bootstrap, seed=cfg.seed)
    operating = run_operating_point(data.val.labels.numpy(), val_prob, data.test.labels.numpy(), test_prob, data.task,
                                    cfg.target_sensitivity)
    spec.threshold, spec.read_size = operating.get("threshold"), data.train.images.shape[-1]
    spec.window = cfg.window  # files are read through it again by predict and evaluate --data
    best = next(row for row in history if row["epoch"] == best_epoch)
    model.cpu()
    metrics = {
        **{f"test_{k}": v for k, v in test.items()},
        **operating,
        **{k: v for k, v in best.items() if k.startswith("val_")},
        **stats,
        "best_epoch": best_epoch, "epochs_run": history[-1]["epoch"], "epochs_planned": cfg.epochs,
        "parameters": count_parameters(model),
        **(costs or {"trainable_parameters": count_parameters(model, True), "stored_bytes": task_bytes(model)}),
        "macs": count_macs(model, spec.in_chans, spec.image_size, len(spec.input_shape) - 1),
        "train_seconds": seconds, "backbone": spec.backbone, "cut": spec.cut, "strategy": cfg.strategy,
        "data": data.name, "seed": cfg.seed, "data_source": data.source,
        "split_counts": split_counts(data),
        "data_fingerprint": fingerprint,
        "cpu_latency_ms": latency_ms(model, spec.in_chans, spec.image_size, dims=len(spec.input_shape) - 1),
        "cpu_latency_threads": torch.get_num_threads(),
        "provenance": provenance(),
        **({"weights_source": run.read_json(RunDir.SOURCE)} if (run / RunDir.SOURCE).is_file() else {}),
    }
    run.write_history(history)
    run.write_predictions(with_calibrated(predictions_table(data.test.labels.numpy(), test_prob, data.task,
                                                            data.classes, data.test.ids),
                                          calibrated_prob, data.classes))
    # the selected model's validation probabilities: what an ensemble of runs averages to choose on validation only
    run.write_predictions(predictions_table(data.val.labels.numpy(), val_prob, data.task, data.classes, data.val.ids),
                          "val")
    run.save_model(model)
    run.write_metrics(metrics)
    run.write_text(MODEL_CARD, model_card(run.path))
    return metrics


def split_counts(data: ImageDataset) -> dict[str, dict[str, int]]:
    """Images per class (multi-label: positives per label) in each split."""
    return {name: dict(zip(data.classes, data.class_counts(name))) for name in ("train", "val", "test")}


def summary(metrics: dict) -> str:
    ci = metrics.get("test_auroc_ci")
    interval = f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""
    return (f"test AUROC {metrics['test_auroc']:.4f}{interval}  AUPRC {metrics['test_auprc']:.4f}  "
            f"accuracy {metrics['test_accuracy']:.4f}  balanced accuracy {metrics['test_balanced_accuracy']:.4f}  "
            f"parameters {metrics['parameters']:,}  stored per task {_bytes(metrics.get('stored_bytes'))}  "
            f"MACs {metrics['macs'] / 1e6:.1f}M  "
            f"(best epoch {metrics['best_epoch']}, {metrics['train_seconds']:.0f}s)")


def _bytes(n: int | None) -> str:
    """A byte count for people: 1.0 MB, 12.3 kB (old runs did not record it)."""
    if n is None:
        return "not recorded"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
