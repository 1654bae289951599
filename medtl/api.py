"""The Python API: short functions over the modules that do the work; the command line is a thin layer over these."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import experiment
from .backbones import backbone_cuts, create_backbone
from .config import TrainConfig
from .data import Reading, load_dataset
from .data.readers import parse_window
from .errors import DataError
from .evaluation import (classification_metrics, count_macs, count_parameters, predictions_table,
                         single_class_metrics)
from .deploy.predict import with_tta
from .ensembles import EnsembleResult, ensemble as average_runs
from .experiment import RunResult
from .model import build_classifier
from .report import report_after
from .resolve import load_data
from .rundir import RunDir, data_fingerprint, make_dir
from .tracking import attach
from .training import distributed
from .artifacts import write_csv, write_json

log = logging.getLogger("medtl")


def train(config: TrainConfig | None = None, *, run_dir: str | Path | None = None, verbose: bool = True,
          **options) -> RunResult:
    """Train one model and evaluate it once on the test split.

    Args:
        config: a `TrainConfig`; `options` override its fields.
        run_dir: write the run exactly here (created if missing) instead of a new timestamped directory under
            `out`; a grid (`medtl compare`) uses it to find its runs again.
        verbose: print the schedule, progress and the summary line.
        **options: any `TrainConfig` field, by its name (`cut="layer3"`, `epochs=10`): the flags of `medtl train`.

    Returns:
        The test metrics, the model, the run directory and the resolved configuration.

    Example:
        `medtl.train(data="breastmnist", cut="blocks.4").metrics["test_auroc"]`
    """
    cfg = TrainConfig.from_dict({**(config or TrainConfig()).to_dict(), **options})
    return reported(experiment.start(cfg, run_dir, verbose))


def resume(run: str | Path, *, verbose: bool = True, **options) -> RunResult:
    """Continue an interrupted run from its last checkpoint; it ends as an uninterrupted run would.

    Args:
        run: the run directory.
        verbose: print progress and the summary line.
        **options: `epochs` (extends the run), `patience`, or run-only options (`threads`, `device`, ...); any other
            option is refused, since the checkpoint holds the configuration's fingerprint.

    Returns:
        The run's result, as `train` returns it.
    """
    return reported(experiment.resume(run, options, verbose))


def reported(result: RunResult) -> RunResult:
    """``report.html`` beside the run's artefacts, unless the run says ``report: false``."""
    if result.config.report and distributed.rank() == 0:
        attach(result.run_dir, [report_after(result.run_dir)])  # to the run's tracker runs, if it has any
    return result


def evaluate(run: str | Path, data: str | None = None, *, data_root: str | None = None, split: str | None = None,
             out: str | Path | None = None, tta: str = "none") -> dict:
    """Score a saved run on its own test images or on another data set.

    Args:
        run: the run directory.
        data: another data set (as for `train`); its class names must be among the model's (even a single class).
            None: exactly the images the run was trained and tested on (its splits drawn again from its config and
            checked against the run's record of them).
        data_root: where MedMNIST files are, for `data`.
        split: the split to score; default: test of the run's own data, every image of `data`.
        out: also write `predictions_<split>.csv` and `metrics_<split>.json` here.
        tta: `"hflip"` averages each image's probabilities with its mirror's.

    Returns:
        The metrics; those that need two classes are None on a single-class set.

    Raises:
        DataError: the run's data changed since training, or `data` does not fit the model.
    """
    run = RunDir(run)
    model = run.load_model()
    spec = model.spec
    if data is None:
        split = split or "test"
        cfg = run.load_config()
        dataset = load_data(cfg)
        recorded = run.metrics().get("data_fingerprint", {}) if run.finished else {}
        if recorded and data_fingerprint(dataset).get(split) != recorded.get(split):
            raise DataError(f"the {split} split of {cfg.data} is not the one {run.path} was tested on (its images or "
                            "labels changed since training); pass --data to score other data on purpose.")
    else:
        cfg = TrainConfig(data=data, data_root=data_root, image_size=spec.image_size)
        reading = Reading(parse_window(spec.window), dicom="3d" if spec.volume else "2d")  # the model's kind
        dataset = load_dataset(data, root=data_root, image_size=spec.image_size, classes=spec.classes or None,
                               all_test=split is None, reading=reading)
        split = split or "test"
    if dataset.is_volume != (spec.volume is not None):
        kinds = ("volumes", "2D images") if dataset.is_volume else ("2D images", "volumes")
        raise DataError(f"{dataset.name} holds {kinds[0]} ({'x'.join(map(str, dataset.image_shape))}), but the model "
                        f"of {run.path} was trained on {kinds[1]}; score it on data of its own kind.")
    if dataset.in_chans != spec.in_chans:
        raise DataError(f"{dataset.name} has {dataset.in_chans}-channel images, the model expects {spec.in_chans}.")
    chosen = dataset.split(split)
    log.info("scoring %d %s images of %s", len(chosen), split, dataset.name)
    prob = with_tta(lambda images: experiment.score(model, images, dataset.task, cfg), chosen.images, tta)
    metrics = (classification_metrics(chosen.labels.numpy(), prob, dataset.task, split=split)
               if dataset.task == "multilabel" or len(chosen.labels.unique()) > 1
               else single_class_metrics(chosen.labels.numpy(), prob, dataset.classes))
    if out is not None:
        out = make_dir(out)
        write_csv(out / f"predictions_{split}.csv", predictions_table(chosen.labels.numpy(), prob, dataset.task,
                                                                      dataset.classes, chosen.ids))
        write_json(out / f"metrics_{split}.json", metrics)
    return metrics


def ensemble(runs: list[str | Path], out: str | Path, *, bootstrap: int = 2000, seed: int = 0,
             target_sensitivity: float | None = None, report: bool = True) -> EnsembleResult:
    """Average the class probabilities of finished runs scored on the same images (seeds, cuts, image sizes).

    Threshold and temperature are chosen on the averaged validation probabilities, so selection stays on validation.

    Args:
        runs: finished run directories; runs not scored on the same images are refused.
        out: the ensemble directory (`metrics.json`, `predictions_{val,test}.csv`, `MODEL_CARD.md`, `report.html`,
            `ensemble.json`), which `medtl predict` accepts.
        bootstrap: resamples for the 95% confidence intervals (0: none).
        seed: seed of the bootstrap.
        target_sensitivity: binary tasks: choose the threshold that reaches this validation sensitivity instead of
            Youden's J.
        report: write `report.html`.

    Returns:
        The ensemble's metrics and directory.
    """
    result = average_runs(runs, out, bootstrap=bootstrap, seed=seed, target_sensitivity=target_sensitivity)
    if report:
        report_after(result.out)
    return result


def cuts(backbone: str, num_classes: int = 2, image_size: int = 224, in_chans: int = 3, head: str = "avg",
         macs: bool = True, volume: str | None = None) -> list[dict]:
    """Every cut point of a backbone, with what truncating there keeps.

    Args:
        backbone: a backbone name (`medtl backbones` lists them).
        num_classes: outputs of the head.
        image_size: input side in pixels (voxels with `volume`).
        in_chans: input channels.
        head: `"avg"` (pooled) or `"flatten"`.
        macs: count MACs (slower).
        volume: `"acs"`, `"i3d"` or `"2.5d"`: the 3D model on `image_size`-cubed volumes.

    Returns:
        One dict per cut: `cut`, `level`, `feature_shape`, `parameters` (head included) and `macs`.
    """
    rows = []
    for cut in backbone_cuts(create_backbone(backbone, None, in_chans)[0]):
        model = build_classifier(backbone, num_classes, cut=cut.name, weights=None, in_chans=in_chans,
                                 image_size=image_size, head=head, volume=volume)
        with torch.no_grad():
            shape = tuple(model.eval().trunk(torch.zeros(1, *model.spec.input_shape)).shape[1:])
        rows.append({
            "cut": cut.name, "level": cut.level, "feature_shape": "x".join(map(str, shape)),
            "parameters": count_parameters(model),
            **({"macs": count_macs(model, in_chans, image_size, len(shape) - 1)} if macs else {}),
        })
    return rows
