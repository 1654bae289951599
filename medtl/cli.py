"""``medtl`` command line: ``train``, ``compare``, ``search``, ``analyze``, ``explain``, ``report``, ``evaluate``,
``predict``, ``export``, ``ensemble``, ``data check``, ``cuts``, ``backbones``, ``strategies``.

Every ``train`` flag is a :class:`~medtl.config.TrainConfig` field (``--image-size`` = ``image_size:`` in YAML), with
its help and allowed values from the field's metadata. Bad input exits with status 2 and a one-paragraph message,
never a traceback. Only this module and ``config`` are imported for ``--help``; the rest loads when a command runs.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import typing
import warnings
from dataclasses import MISSING, fields
from pathlib import Path

from . import __version__
from .config import VOLUME_MODES, TrainConfig, check_value, grid_refused, limits, meta_of, read_yaml
from .errors import ConfigError, MedtlError, MedtlWarning

# What a grid uses instead of the train options it sets itself.
GRID_INSTEAD = {"strategy": "--strategies", "cut": "--cuts", "seed": "--seeds", "resplit": "--resplits",
                "freeze_to": "--cuts (the cut axis sets it)", "slim_from": "--cuts (the cut axis sets it)",
                "tune": "--cuts (the cut axis sets it)",
                "name": "nothing (grid runs are named by their configuration)",
                "track_parent": "nothing (the grid nests its runs under a parent run of its own)"}


# the TrainConfig options that `medtl data check` takes
_CHECK_OPTIONS = ("data_root", "image_size", "split", "seed", "split_seed", "group_by", "skip_bad_images", "threads",
                  "window", "dicom")


# The kind and range of every numeric flag that is not a train option (those carry theirs in TrainConfig's metadata,
# reused here where a command takes the same value): one table, checked as the flags are parsed.
NUMBERS: dict[str, tuple[type, dict]] = {
    "cuts": (int, limits(1, 1000)),
    "threads": (int, meta_of("threads")), "image_size": (int, meta_of("image_size")),
    "bootstrap": (int, meta_of("bootstrap")), "seed": (int, meta_of("seed")),
    "target_sensitivity": (float, meta_of("target_sensitivity")),
    "probability": (float, limits(0, 1)), "cosine": (float, limits(0, 1, low_open=True)),
    "files": (int, limits(1, 65_536)), "images": (int, limits(1, 100_000)), "classes": (int, limits(1, 100_000)),
    "channels": (int, limits(1, 64)), "repeats": (int, limits(1, 1000)), "epochs": (int, limits(1, 100_000)),
    "factor": (int, limits(2, 1000)), "workers": (int, limits(1, 1024)), "gpus": (float, limits(0, 1024)),
}


def _number(name: str) -> typing.Callable[[str], int | float]:
    """The argparse ``type`` of a flag holding a :data:`NUMBERS` value: a bad one exits with status 2 naming the
    flag (``argument --threads: ...``) before anything runs."""
    kind, meta = NUMBERS[name]

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            check_value("it", value, meta)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return parse


def _parse_floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_config_flags(parser: argparse.ArgumentParser, grid: bool = False, skip: tuple[str, ...] = (),
                      only: tuple[str, ...] | None = None) -> None:
    """One flag per config field; for a grid, the options it sets itself are parsed (to be refused with a message
    that says what to use instead) but not shown."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in skip or only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        # a field without a default has a default_factory; mypy does not narrow it from MISSING
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        hint = hints[f.name]
        shown = f"{f.metadata['help']} (default: {default})"
        kwargs: dict = {"default": argparse.SUPPRESS,
                        "help": argparse.SUPPRESS if grid and not f.metadata["grid"] else shown}
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif "list[str]" in str(hint):  # repeatable and comma-separated: --track mlflow --track tensorboard
            parser.add_argument(flag, action="extend", type=lambda text: text.split(","), metavar="NAME", **kwargs)
        elif "list" in str(hint):
            parser.add_argument(flag, type=_parse_floats, metavar="A,B,..", **kwargs)
        else:
            base = (next((t for t in typing.get_args(hint) if t is not type(None)), hint) if typing.get_args(hint)
                    else hint)
            parser.add_argument(flag, type=base, metavar=f.name.upper(), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="Transfer learning for medical image classification, "
                                     "with TruncatedTL: fine-tune only the bottom of a pretrained CNN.")
    parser.add_argument("--version", action="version", version=f"medtl {__version__}")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train one model (no arguments: the built-in BreastMNIST demo)")
    train.add_argument("--config", type=Path, help="YAML file of options (flags override it)")
    train.add_argument("--resume", type=Path, metavar="RUN", help="continue an interrupted run directory (with "
                       "--epochs N: extend it; only --epochs, --patience and run options such as --threads may be "
                       "given)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_flags(train)

    ev = sub.add_parser("evaluate", help="score a saved run: its own test images, or another data set")
    ev.add_argument("run", type=Path, help="run directory (holding model.safetensors and model.json)")
    ev.add_argument("--data", help="data set (default: exactly the images the run was trained and tested on)")
    ev.add_argument("--data-root")
    ev.add_argument("--split", choices=("train", "val", "test"),
                    help="the split to score (default: the test split of the run's own data; every image of --data)")
    ev.add_argument("--out", type=Path, help="write predictions and metrics here")
    ev.add_argument("--threads", type=_number("threads"), help="CPU threads (default: one per core)")
    ev.add_argument("--tta", default="none", choices=("none", "hflip"),
                    help="test-time augmentation: hflip averages each image with its mirror (default: none)")

    pr = sub.add_parser("predict", help="class probabilities for image files, from a run or an exported .onnx model")
    pr.add_argument("model", type=Path, help="run directory, exported .onnx file, or the folder `medtl export` wrote")
    pr.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or CSVs with a path column")
    pr.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV to write (default predictions.csv)")
    pr.add_argument("--threshold", type=_number("probability"),
                    help="binary: call positive when P(positive) >= this (default: the "
                    "threshold the run chose on validation)")
    pr.add_argument("--tta", default="none", choices=("none", "hflip"), help="test-time augmentation (default: none)")
    pr.add_argument("--skip-bad-images", action="store_true", help="leave unreadable files out and list them "
                    "instead of failing")
    pr.add_argument("--batch-size", type=_number("files"), default=256,
                    help="files read and scored at once (bounds memory)")
    pr.add_argument("--threads", type=_number("threads"), help="CPU threads")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    en = sub.add_parser("ensemble", help="average the class probabilities of several finished runs on the same "
                        "images (seeds, cuts, sizes) and write the artefacts of a run for the average")
    en.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="finished run directories scored on the same "
                    "validation and test images")
    en.add_argument("--out", type=Path, required=True, help="directory for ensemble.json, metrics.json, predictions, "
                    "MODEL_CARD.md and report.html (`medtl predict DIR` runs every member and averages)")
    en.add_argument("--bootstrap", type=_number("bootstrap"), default=2000,
                    help="bootstrap resamples for the 95%% intervals "
                    "(default 2000; 0: none)")
    en.add_argument("--seed", type=_number("seed"), default=0, help="seed of the bootstrap (default 0)")
    en.add_argument("--target-sensitivity", type=_number("target_sensitivity"),
                    help="binary: choose the threshold reaching this sensitivity "
                    "on the averaged validation probabilities (default: Youden's J)")
    en.add_argument("--threads", type=_number("threads"),
                    help="CPU threads (the members' latency is measured with them)")
    en.add_argument("--no-report", dest="report", action="store_false", help="no report.html")

    ex = sub.add_parser("export", help="export a run's model to one self-contained file, checked against torch")
    ex.add_argument("run", type=Path, help="run directory")
    ex.add_argument("--format", default="onnx", choices=("onnx",))
    ex.add_argument("--out", type=Path, help="output folder (default: RUN/export)")

    sv = sub.add_parser("serve", help="an HTTP service for a model: POST /predict, GET /health, /metadata and a page "
                        "to drop images on (onnxruntime, no torch; pip install 'medtl[serve]')")
    sv.add_argument("model", type=Path, help="run directory (served from its export/model.onnx: run `medtl export RUN` "
                    "first), ensemble directory, or an exported .onnx file")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--max-batch", type=int, default=32, help="most images scored in one model call (default 32)")
    sv.add_argument("--batch-window-ms", type=float, default=5.0, help="how long a request waits for others to "
                    "share its model call (default 5 ms)")
    sv.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body accepted, in MiB "
                    "(default 20)")
    sv.add_argument("--threads", type=int, help="onnxruntime threads per model call (default: one per core)")

    cuts = sub.add_parser("cuts", help="list a backbone's cut points with shapes, parameters and MACs")
    cuts.add_argument("--backbone", required=True)
    cuts.add_argument("--num-classes", type=_number("classes"), default=2)
    cuts.add_argument("--image-size", type=_number("image_size"), help="input side (default: 224; 64 with --volume)")
    cuts.add_argument("--in-chans", type=_number("channels"), default=3)
    cuts.add_argument("--head", default="avg", choices=("avg", "flatten"))
    cuts.add_argument("--level", choices=("stem", "block", "layer"), help="only cuts of this level")
    cuts.add_argument("--volume", choices=VOLUME_MODES, help="the 3D model this conversion makes (shapes, "
                      "parameters and MACs on image-size-cubed volumes)")

    compare = sub.add_parser("compare", help="train a grid strategies x cut points x seeds and tabulate it "
                             "(resumable: finished runs are skipped)")
    compare.add_argument("--strategies", help="comma-separated strategies (default: every registered one, as "
                         "`medtl strategies` lists them, whose optional library is installed)")
    compare.add_argument("--cuts", default="block", help="the cut axis of truncated/lwft/transfusion: block, layer, "
                         "all, auto (the one-pass estimate's pick), or CUT,CUT,... (default: block)")
    compare.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    compare.add_argument("--resplits", type=_number("repeats"), metavar="K",
                         help="instead of seeds: K repeats, each on its own "
                         "stratified split of train+val+test pooled (the paper's three splits)")
    compare.add_argument("--select-by", default="auprc", choices=("auroc", "auprc"),
                         help="validation metric that picks the -1/-2 rows (default: auprc)")
    compare.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    _add_grid_flags(compare)

    search = sub.add_parser("search", help="the paper's two-stage search for the cut: TruncatedTL at every block "
                            "boundary, then at every layer inside the best block (resumable)")
    search.add_argument("--seeds", default="0,1,2", help="comma-separated seeds averaged per cut (default: 0,1,2)")
    search.add_argument("--select-by", default="auprc", choices=("auroc", "auprc"),
                        help="validation metric that picks the cut (default: auprc)")
    search.add_argument("--next-block", action="store_true", help="stage 2 also searches inside the next block")
    search.add_argument("--cut", choices=("auto",), default=argparse.SUPPRESS,
                        help="auto: the one-pass estimate replaces stage 1")
    search.add_argument("--shortlist", type=_number("cuts"), default=0, metavar="K",
                        help="with --cut auto: fine-tune the estimate's K best-ranked cuts instead of the two stages "
                        "and pick the best on validation (see the guide's cut-estimators page for K)")
    search.add_argument("--scheduler", choices=("asha",), help="asha: successive halving instead of the two stages: "
                        "every cut starts, the worse half (on mean validation metric) is stopped at each rung")
    search.add_argument("--grace-epochs", type=_number("epochs"), default=3,
                        help="asha: the first rung, in epochs; the next are "
                        "at grace x factor, grace x factor^2, ... (default: 3)")
    search.add_argument("--reduction-factor", type=_number("factor"), default=2,
                        help="asha: 1/factor of the candidates go on at "
                        "each rung (default: 2)")
    search.add_argument("--noise-band", type=float, default=1.0, help="asha: a rung also keeps every candidate within "
                        "this many standard errors of the validation metric below its cut-off (0: ASHA's rule as "
                        "published; default: 1)")
    _add_grid_flags(search, skip=("cut",))

    analyze = sub.add_parser("analyze", help="analyse a trained run").add_subparsers(dest="analysis", required=True)
    reuse = analyze.add_parser("reuse", help="SVCCA and linear CKA of pretrained vs fine-tuned features at every cut "
                               "up to the run's cut, with a random baseline (the paper's feature-reuse figure)")
    reuse.add_argument("run", type=Path, help="run directory (model.json, model.safetensors, config.yaml)")
    reuse.add_argument("--images", type=_number("images"), default=128,
                       help="images compared (default: 128, as in the paper)")
    reuse.add_argument("--split", default="test", choices=("train", "val", "test"), help="their split (default: test)")
    reuse.add_argument("--results", type=Path, help="directory of truncated runs (e.g. a compare output) whose test "
                       "AUPRC per cut is drawn on a twin axis")
    reuse.add_argument("--weights", help="pretrained weights to compare with (default: those the run started from)")
    reuse.add_argument("--out", type=Path, help="where reuse.png and reuse.csv go (default: the run directory)")

    explain = sub.add_parser("explain", help="Grad-CAM maps of one or more runs side by side (gradcam.png, "
                             "gradcam.npz): one column per run, one row per image")
    explain.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run directories trained on the same data")
    explain.add_argument("--images", type=_number("images"), default=4,
                         help="images explained (default: 4, classes in turn)")
    explain.add_argument("--split", default="test", choices=("train", "val", "test"),
                         help="their split (default: test)")
    explain.add_argument("--layer", help="trunk module whose output is explained (default: each model's cut)")
    explain.add_argument("--target", default="label", choices=("label", "pred"),
                         help="explain the true class or each model's predicted class (default: label)")
    explain.add_argument("--out", type=Path, help="output directory (default: the first run's directory)")

    report = sub.add_parser("report", help="write a self-contained report.html for a run, a compare grid or a search")
    report.add_argument("directory", type=Path, help="a run, `medtl compare` or `medtl search` output directory")
    data = sub.add_parser("data", help="look at a data set").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="class counts, duplicates and near duplicates across splits, groups in "
                            "several splits, odd images; exit status 1 when anything leaks across splits")
    check.add_argument("data", help="data set (as for train --data)")
    check.add_argument("--out", type=Path, help="write leakage.json and pairs.png (flagged pairs side by side) here")
    check.add_argument("--threshold", type=_number("cosine"),
                       help="cosine of 16x16 grey thumbnails from which two images count "
                       "as near duplicates (default: 0.98; see README 'Data')")
    _add_config_flags(check, only=_CHECK_OPTIONS)

    sub.add_parser("backbones", help="list backbone names")
    sub.add_parser("strategies", help="list transfer strategies")
    return parser


def _add_grid_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    parser.add_argument("--workers", type=_number("workers"), default=1,
                        help="runs trained at once, in separate processes "
                        "(default 1; without --threads each gets cores/workers threads)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"), help="where runs train: local "
                        "processes (default) or Ray Tune trials on a Ray cluster (pip install 'medtl[ray]')")
    parser.add_argument("--address", help="ray: the cluster to join (auto, or HOST:PORT; default: start a local one)")
    parser.add_argument("--cpus-per-run", type=_number("workers"), default=1,
                        help="ray: CPUs each run reserves (and its torch "
                        "threads, unless --threads is given; default 1)")
    parser.add_argument("--gpus-per-run", type=_number("gpus"), default=0,
                        help="ray: GPUs each run reserves (a fraction packs "
                        "several runs on one GPU; default 0)")
    parser.add_argument("--config", type=Path, help="YAML file of training options (flags override it)")
    parser.add_argument("--verbose", action="store_true", help="progress bars of every run")
    _add_config_flags(parser, grid=True, skip=skip)


def _options(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}


def _config(args: argparse.Namespace, options: dict) -> TrainConfig:
    cfg = TrainConfig.load(args.config, **options) if args.config else TrainConfig.from_dict(options)
    if cfg.cut_estimator != "ridge" and cfg.cut != "auto" and getattr(args, "cuts", None) != "auto":
        raise ConfigError(f"--cut-estimator {cfg.cut_estimator} chooses how --cut auto scores the cuts; add --cut auto "
                          "(medtl compare: --cuts auto) or drop --cut-estimator.")
    return cfg


def _train(args: argparse.Namespace) -> None:
    from .api import resume, train
    from .experiment import summary

    options = _options(args)
    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with its own config.yaml; drop --config.")
        result = resume(args.resume, verbose=not args.quiet, **options)
    else:
        result = train(_config(args, options), verbose=not args.quiet)
    if args.quiet:  # verbose runs print this themselves
        print(f"{result.run_dir}\n{summary(result.metrics)}")


def _grid_config(args: argparse.Namespace, command: str, default_out: str,
                 allowed_cut: bool) -> tuple[TrainConfig, str]:
    """The grid's base config from ``--config`` and flags, refusing the options the grid sets itself."""
    options = _options(args)
    out = options.pop("out", default_out)
    cfg = _config(args, options)
    given = dict(options)
    if args.config:  # a study.yaml written for `medtl train` may name these: a grid must still refuse them
        given.update({str(k).replace("-", "_"): v for k, v in read_yaml(args.config).items()})
    auto = given.get("cut") == "auto" and allowed_cut
    refused = [k for k in grid_refused(given) if not (k == "cut" and auto)]
    if refused:
        instead = "; ".join(f"--{k.replace('_', '-')}: {GRID_INSTEAD[k]}" for k in refused)
        raise ConfigError(f"medtl {command} sets {', '.join('--' + k.replace('_', '-') for k in refused)} for each "
                          f"run itself; use {instead}.")
    return cfg, out


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated whole numbers, got {text!r}.") from None


def _executor(args: argparse.Namespace, out: str):
    """``--executor``: local processes, or Ray (imported only when asked for; its absence is a clear error)."""
    if args.executor == "local":
        from .compare import LocalExecutor

        given = [f for f, v in (("--address", args.address), ("--cpus-per-run", args.cpus_per_run != 1),
                                ("--gpus-per-run", args.gpus_per_run)) if v]
        if given:
            raise ConfigError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} only with --executor ray.")
        return LocalExecutor(args.workers)
    if args.workers != 1:
        raise ConfigError("--workers is for --executor local; with Ray, --cpus-per-run and the cluster's size decide "
                          "how many runs train at once.")
    from .compare.ray_executor import RayExecutor

    # Tune's experiment state beside the runs: on the filesystem every node shares
    return RayExecutor(address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                       storage=Path(out) / "tune")


def _compare(args: argparse.Namespace) -> None:
    from .compare import compare
    from .strategies import STRATEGIES
    from .report import report_after
    from .tracking import attach

    cfg, out = _grid_config(args, "compare", "runs/compare", allowed_cut=True)
    # by default every registered strategy whose optional library is installed (lora needs peft)
    strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else [
        name for name, entry in STRATEGIES.items() if entry.available]
    result = compare(cfg, strategies, cuts=args.cuts,
                     seeds=_seeds(args.seeds) if args.resplits is None else [], resplits=args.resplits, out=out,
                     select=args.select_by, plots=not args.no_plots, workers=args.workers, verbose=args.verbose,
                     executor=_executor(args, out))
    if cfg.report and (page := report_after(Path(out))):
        result.files.append(page)
        attach(out, [page])  # to the grid's parent tracker run, if it has one
    print("\n".join(str(f) for f in result.files))


def _search(args: argparse.Namespace) -> None:
    from .report import report_after
    from .search import search
    from .tracking import attach

    cfg, out = _grid_config(args, "search", "runs/search", allowed_cut=True)
    from .compare.halving import Halving

    if args.scheduler is None and (args.grace_epochs, args.reduction_factor, args.noise_band) != (3, 2, 1.0):
        raise ConfigError("--grace-epochs, --reduction-factor and --noise-band are options of --scheduler asha.")
    if not args.noise_band >= 0:
        raise ConfigError(f"--noise-band is a number of standard errors, 0 or more; got {args.noise_band}.")
    result = search(cfg, seeds=_seeds(args.seeds), select=args.select_by, next_block=args.next_block,
                    auto=cfg.cut == "auto", shortlist=args.shortlist, out=out, workers=args.workers,
                    verbose=args.verbose,
                    executor=_executor(args, out), scheduler=args.scheduler,
                    halving=Halving(cfg.epochs, args.grace_epochs, args.reduction_factor, args.noise_band))
    print(result.table())
    if cfg.report and (page := report_after(Path(out))):
        result.files.append(page)
        attach(out, [page])  # to the grid's parent tracker run, if it has one
    print("\n".join(str(f) for f in result.files))


def _analyze(args: argparse.Namespace) -> None:
    from .analysis.reuse import reuse, write_reuse

    result = reuse(args.run, images=args.images, split=args.split, weights=args.weights, results=args.results)
    print(result.table())
    print("\n".join(str(f) for f in write_reuse(result, args.out or args.run)))


def _explain(args: argparse.Namespace) -> None:
    from .analysis.gradcam import explain, write_explanation

    result = explain(args.runs, images=args.images, split=args.split, layer=args.layer, target=args.target)
    print("\n".join(str(f) for f in write_explanation(result, args.out or args.runs[0])))


def _report(args: argparse.Namespace) -> None:
    from .report import write_report
    from .tracking import attach

    page = write_report(args.directory)
    attach(args.directory, [page])  # to the run's or grid's tracker run, if it has one
    print(page)


def _use_threads(args: argparse.Namespace) -> None:
    """``--threads`` of the commands that are no training run (its range is checked as it is parsed)."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def _evaluate(args: argparse.Namespace) -> None:
    from .api import evaluate

    _use_threads(args)
    metrics = evaluate(args.run, args.data, data_root=args.data_root, split=args.split, out=args.out,
                       tta=args.tta)
    print("  ".join(f"{k} {'undefined' if v is None else f'{v:.4f}'}" for k, v in metrics.items()))


def _data(args: argparse.Namespace) -> int:
    from .data.check import check_command
    from .resolve import reading_of

    cfg = TrainConfig.from_dict({k: getattr(args, k) for k in _CHECK_OPTIONS if hasattr(args, k)})
    return check_command(args.data, out=args.out, threshold=args.threshold, root=cfg.data_root,
                         image_size=cfg.read_size, split=tuple(cfg.split), seed=cfg.data_seed, group_by=cfg.group_by,
                         skip_bad_images=cfg.skip_bad_images, threads=cfg.threads, reading=reading_of(cfg))


def _predict(args: argparse.Namespace) -> None:
    from .deploy.predict import predict

    _use_threads(args)
    result = predict(args.model, args.inputs, args.out, threshold=args.threshold, tta=args.tta,
                     skip_bad_images=args.skip_bad_images, batch_size=args.batch_size, verbose=not args.quiet)
    print(f"{result.out}: {result.predicted} image(s) predicted" +
          (f", {len(result.skipped)} unreadable file(s) skipped" if result.skipped else ""))


def _ensemble(args: argparse.Namespace) -> None:
    from .api import ensemble

    _use_threads(args)
    result = ensemble(args.runs, args.out, bootstrap=args.bootstrap, seed=args.seed,
                      target_sensitivity=args.target_sensitivity, report=args.report)
    m, ci = result.metrics, result.metrics.get("test_auroc_ci")
    print(f"{result.out}\nensemble of {m['members']} runs: test AUROC {m['test_auroc']:.4f}"
          f"{f' (95% CI {ci[0]:.3f}–{ci[1]:.3f})' if ci else ''}  AUPRC {m['test_auprc']:.4f}  accuracy "
          f"{m['test_accuracy']:.4f}  balanced accuracy {m['test_balanced_accuracy']:.4f}  (validation AUROC "
          f"{m['val_auroc']:.4f})\nall members: {m['parameters']:,} parameters, {m['macs'] / 1e6:.1f}M MACs, CPU "
          f"latency {m['cpu_latency_ms']:.2f} ms at batch 1, one member after another "
          f"({m['cpu_latency_threads']} thread(s))")


def _export(args: argparse.Namespace) -> None:
    from .deploy.export import export
    from .tracking import attach

    path = export(args.run, args.out, args.format).path
    attach(args.run, [path])  # to the run's tracker runs, if it has any (deploy sits below tracking)
    print(path)


def _serve(args: argparse.Namespace) -> None:
    from .deploy.serve import serve  # imports no torch

    serve(args.model, host=args.host, port=args.port, max_batch=args.max_batch,
          batch_window_ms=args.batch_window_ms, max_body_mb=args.max_body_mb, threads=args.threads)


def _cuts(args: argparse.Namespace) -> None:
    from .api import cuts
    from .backbones import get_spec

    default = get_spec(args.backbone).default_cut
    args.image_size = args.image_size or (64 if args.volume else 224)
    rows = [r for r in cuts(args.backbone, args.num_classes, args.image_size, args.in_chans, args.head,
                            volume=args.volume) if args.level is None or r["level"] == args.level]
    shape = "x".join(map(str, [args.in_chans] + [args.image_size] * (3 if args.volume else 2)))
    print(f"{args.backbone}{f' ({args.volume} 3D)' if args.volume else ''}: {args.num_classes} classes, {shape} input, "
          f"{args.head} head; * = the default cut of --strategy truncated")
    print(f"{'cut':<28}{'level':<7}{'feature shape':>16}{'parameters':>14}{'MACs':>10}")
    for r in rows:
        name = f"{r['cut']} *" if r["cut"] == default else r["cut"]
        print(f"{name:<28}{r['level']:<7}{r['feature_shape']:>16}{r['parameters']:>14,}{r['macs'] / 1e9:>9.3f}G")


def _list(args: argparse.Namespace) -> None:
    import textwrap

    if args.command == "backbones":
        from .backbones import BACKBONES

        for name, spec in sorted(BACKBONES.items()):
            print(f"{name:<22}{spec.library}:{spec.arch}  (default cut {spec.default_cut})")
        print("also: timm:<name> and torchvision:<name> for other ResNet, DenseNet and EfficientNet models")
    else:
        from .strategies import STRATEGIES

        name_w = max(map(len, STRATEGIES)) + 2  # the columns fit the longest name and label
        label_w = max(len(e.label) for e in STRATEGIES.values()) + 2
        for name, entry in STRATEGIES.items():
            options = ", ".join("--" + p.replace("_", "-") for p in entry.params)
            text = f"{entry.summary}" + (f" Options: {options}." if options else "")
            lines = textwrap.wrap(text, 100 - name_w - label_w)
            print(f"{name:<{name_w}}{entry.label:<{label_w}}{lines[0]}")
            for line in lines[1:]:
                print(" " * (name_w + label_w) + line)


def _preflight(command: str, args: argparse.Namespace) -> None:
    """Before a command does any work (so that none spends minutes and then fails on them): a Ray cluster's
    ``--address`` answers, and ``--out`` is usable (a folder that can be written or created; ``predict``: a file)."""
    if getattr(args, "executor", None) == "ray":
        from .cluster import check_reachable

        check_reachable(args.address)
    out = getattr(args, "out", None)
    if command in ("train", "compare", "search") or not isinstance(out, Path):
        return  # a training option: RunDir creates and checks it before training
    from .artifacts import check_out_dir, check_out_file

    (check_out_file if command == "predict" else check_out_dir)(out)


def _show_warning(default: typing.Callable) -> typing.Callable:
    """``warnings.showwarning`` that prints medtl's own warnings as ``medtl: warning: ...`` (no source line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, MedtlWarning):
            print(f"medtl: warning: {message}", file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _interrupted(command: str, error: KeyboardInterrupt) -> str:
    """What to do after an interruption: resume the run (once one exists), or re-run the grid command."""
    run = getattr(error, "run", None)
    if command in ("compare", "search"):
        return (f"medtl: interrupted; run the same `medtl {command}` command again: finished runs are kept and "
                "interrupted ones resume from their checkpoints.")
    if run is not None and getattr(error, "finished", False):
        return f"medtl: interrupted as {run} finished; its results are complete."
    if run is not None:
        return f"medtl: interrupted; continue with `medtl train --resume {run}`."
    return "medtl: interrupted before a run directory was created; nothing to resume."


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # the same orderly stop as Ctrl-C (training checkpoints first)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "train"
    if args.command is None:
        args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    handlers = {"train": _train, "compare": _compare, "search": _search, "analyze": _analyze, "explain": _explain,
                "report": _report, "evaluate": _evaluate, "cuts": _cuts, "backbones": _list, "strategies": _list,
                "data": _data, "predict": _predict, "export": _export, "ensemble": _ensemble, "serve": _serve}
    logger = logging.getLogger("medtl")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", MedtlWarning)
            warnings.showwarning = _show_warning(warnings.showwarning)
            _preflight(command, args)
            status = handlers[command](args)
    except MedtlError as e:
        print(f"medtl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(_interrupted(command, e), file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return status or 0
