"""``medtl`` command line: ``train``, ``compare``, ``search``, ``analyze``, ``evaluate``, ``predict``, ``export``,
``cuts``, ``backbones``, ``strategies``.

Every ``train`` flag is a :class:`~medtl.config.TrainConfig` field (``--image-size`` = ``image_size:`` in YAML).
Bad input exits with status 2 and a one-paragraph message, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import typing
import warnings
from dataclasses import MISSING, fields
from pathlib import Path

from .config import TrainConfig
from .errors import ConfigError, MedtlError, MedtlWarning

_HELP = {
    "data": "MedMNIST name (breastmnist, pneumoniamnist_64, ...), an ImageFolder directory, a CSV manifest or an .npz",
    "data_root": "directory holding MedMNIST .npz files",
    "split": "train,val,test fractions for data without given splits",
    "backbone": "backbone name (see `medtl backbones`)",
    "weights": "imagenet, none, or a weights file (.safetensors / tensors-only .pth)",
    "strategy": "transfer strategy (see `medtl strategies`)",
    "cut": "cut point: the last kept layer (see `medtl cuts`), or auto (estimated from one forward pass of the "
           "pretrained backbone; see README 'Choosing the cut'); default: the backbone's mid-level default",
    "freeze_to": "lwft: last frozen cut",
    "slim_from": "transfusion: last pretrained cut; every later block is thinner and re-initialised",
    "shrink": "transfusion: channel divisor for the blocks after --slim-from (default 2)",
    "probe_epochs": "lp-ft: epochs of linear probing before everything is fine-tuned (default 5)",
    "resplit": "pool train, val and test and draw a new stratified split (--split fractions) with this seed",
    "cache_mb": "memory bound (MiB) for caching the output of frozen layers; 0 turns the cache off",
    "head": "avg (global average pooling + linear) or flatten (flatten + linear)",
    "image_size": "model input size in pixels",
    "select": "validation metric used to pick the epoch: auroc, auprc or loss",
    "patience": "early stopping: epochs without validation improvement (0: off)",
    "out": "directory that receives run directories",
    "precision": "fp32, bf16 (autocast; on CPU it pays for ResNets, not EfficientNet-Lite) or fp16 (CUDA only, "
                 "with loss scaling)",
    "compile": "torch.compile the model (pays only for long runs; see benchmarks/README.md)",
    "cudnn_benchmark": "let cuDNN pick the fastest kernels (GPU; faster, not bit-repeatable)",
    "threads": "CPU threads (default: one per core; on a busy machine 1 can be several times faster)",
    "target_sensitivity": "binary: choose the decision threshold that reaches this sensitivity on validation "
                          "(default: maximise Youden's J on validation)",
    "skip_bad_images": "leave unreadable image files out (listed in the run's skipped_files.txt) instead of failing",
    "trust_pickle": "let --weights FILE be a pickle checkpoint: loading it can run code, so only for files you trust "
                    "(never read from a config file)",
}


def _parse_floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        hint = hints[f.name]
        kwargs: dict = {"default": argparse.SUPPRESS, "help": f"{_HELP.get(f.name, '')} (default: {default})".lstrip()}
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif "list" in str(hint):
            parser.add_argument(flag, type=_parse_floats, metavar="A,B,..", **kwargs)
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint) if typing.get_args(hint) else hint
            parser.add_argument(flag, type=base, metavar=f.name.upper(), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medtl", description="Transfer learning for medical image classification, "
                                     "with TruncatedTL: fine-tune only the bottom of a pretrained CNN.")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train one model (no arguments: the built-in BreastMNIST demo)")
    train.add_argument("--config", type=Path, help="YAML file of options (flags override it)")
    train.add_argument("--resume", type=Path, metavar="RUN", help="continue an interrupted run directory")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_flags(train)

    ev = sub.add_parser("evaluate", help="score a saved run on a data set")
    ev.add_argument("run", type=Path, help="run directory (holding model.safetensors and model.json)")
    ev.add_argument("--data", help="data set (default: the one it was trained on)")
    ev.add_argument("--data-root")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--out", type=Path, help="write predictions and metrics here")
    ev.add_argument("--tta", default="none", choices=("none", "hflip"),
                    help="test-time augmentation: hflip averages each image with its mirror (default: none)")

    pr = sub.add_parser("predict", help="class probabilities for image files, from a run or an exported .onnx model")
    pr.add_argument("model", type=Path, help="run directory, exported .onnx file, or the folder `medtl export` wrote")
    pr.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or CSVs with a path column")
    pr.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV to write (default predictions.csv)")
    pr.add_argument("--threshold", type=float, help="binary: call positive when P(positive) >= this (default: the "
                    "threshold the run chose on validation)")
    pr.add_argument("--tta", default="none", choices=("none", "hflip"), help="test-time augmentation (default: none)")
    pr.add_argument("--skip-bad-images", action="store_true", help="leave unreadable files out and list them "
                    "instead of failing")
    pr.add_argument("--batch-size", type=int, default=256, help="files read and scored at once (bounds memory)")
    pr.add_argument("--threads", type=int, help="CPU threads")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")

    ex = sub.add_parser("export", help="export a run's model to one self-contained file, checked against torch")
    ex.add_argument("run", type=Path, help="run directory")
    ex.add_argument("--format", default="onnx", choices=("onnx",))
    ex.add_argument("--out", type=Path, help="output folder (default: RUN/export)")

    cuts = sub.add_parser("cuts", help="list a backbone's cut points with shapes, parameters and MACs")
    cuts.add_argument("--backbone", required=True)
    cuts.add_argument("--num-classes", type=int, default=2)
    cuts.add_argument("--image-size", type=int, default=224)
    cuts.add_argument("--in-chans", type=int, default=3)
    cuts.add_argument("--head", default="avg", choices=("avg", "flatten"))
    cuts.add_argument("--level", choices=("stem", "block", "layer"), help="only cuts of this level")

    compare = sub.add_parser("compare", help="train a grid strategies x cut points x seeds and tabulate it "
                             "(resumable: finished runs are skipped)")
    compare.add_argument("--strategies", default="full,linear,lwft,transfusion,truncated,scratch,llrd,lp-ft",
                         help="comma-separated strategies (default: all)")
    compare.add_argument("--cuts", default="block", help="the cut axis of truncated/lwft/transfusion: block, layer, "
                         "all, auto (the one-pass estimate's pick; also what --cut auto means here), or CUT,CUT,... "
                         "(default: block)")
    compare.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    compare.add_argument("--resplits", type=int, metavar="K", help="instead of seeds: K repeats, each on its own "
                         "stratified split of train+val+test pooled (the paper's three splits)")
    compare.add_argument("--select-by", default="auprc", choices=("auroc", "auprc"),
                         help="validation metric that picks the -1/-2 rows (default: auprc)")
    compare.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    compare.add_argument("--workers", type=int, default=1, help="runs trained at once, in separate processes "
                         "(default 1; without --threads each gets cores/workers threads)")
    compare.add_argument("--config", type=Path, help="YAML file of training options (flags override it)")
    compare.add_argument("--verbose", action="store_true", help="progress bars of every run")
    _add_config_flags(compare)

    search = sub.add_parser("search", help="the paper's two-stage search for the cut: TruncatedTL at every block "
                            "boundary, then at every layer inside the best block (resumable)")
    search.add_argument("--seeds", default="0,1,2", help="comma-separated seeds averaged per cut (default: 0,1,2)")
    search.add_argument("--select-by", default="auprc", choices=("auroc", "auprc"),
                        help="validation metric that picks the cut (default: auprc)")
    search.add_argument("--next-block", action="store_true", help="stage 2 also searches inside the next block")
    search.add_argument("--config", type=Path, help="YAML file of training options (flags override it)")
    search.add_argument("--verbose", action="store_true", help="progress bars of every run")
    _add_config_flags(search)

    analyze = sub.add_parser("analyze", help="analyse a trained run").add_subparsers(dest="analysis", required=True)
    reuse = analyze.add_parser("reuse", help="SVCCA and linear CKA of pretrained vs fine-tuned features at every cut "
                               "up to the run's cut, with a random baseline (the paper's feature-reuse figure)")
    reuse.add_argument("run", type=Path, help="run directory (model.json, model.safetensors, config.yaml)")
    reuse.add_argument("--images", type=int, default=128, help="images compared (default: 128, as in the paper)")
    reuse.add_argument("--split", default="test", choices=("train", "val", "test"), help="their split (default: test)")
    reuse.add_argument("--results", type=Path, help="directory of truncated runs (e.g. a compare output) whose test "
                       "AUPRC per cut is drawn on a twin axis")
    reuse.add_argument("--weights", help="pretrained weights to compare with (default: those the run started from)")
    reuse.add_argument("--out", type=Path, help="where reuse.png and reuse.csv go (default: the run directory)")

    sub.add_parser("backbones", help="list backbone names")
    sub.add_parser("strategies", help="list transfer strategies")
    return parser


def _train(args: argparse.Namespace) -> None:
    from .api import summary, train

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if args.resume:
        result = train(resume=args.resume, verbose=not args.quiet)
    else:
        cfg = TrainConfig.load(args.config, **options) if args.config else TrainConfig.from_dict(options)
        result = train(cfg, verbose=not args.quiet)
    if args.quiet:  # verbose runs print this themselves
        print(f"{result.run_dir}\n{summary(result.metrics)}")


def _compare(args: argparse.Namespace) -> None:
    from .compare import compare

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    out = options.pop("out", "runs/compare")
    cfg = TrainConfig.load(args.config, **options) if args.config else TrainConfig.from_dict(options)
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.resplits is None else []
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated whole numbers, got {args.seeds!r}.") from None
    result = compare(cfg, [s.strip() for s in args.strategies.split(",")], cuts=args.cuts, seeds=seeds,
                     resplits=args.resplits, out=out, select=args.select_by, plots=not args.no_plots,
                     workers=args.workers, verbose=args.verbose)
    print("\n".join(str(f) for f in result.files))


def _search(args: argparse.Namespace) -> None:
    from .search import search

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    out = options.pop("out", "runs/search")
    cfg = TrainConfig.load(args.config, **options) if args.config else TrainConfig.from_dict(options)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated whole numbers, got {args.seeds!r}.") from None
    result = search(cfg, seeds=seeds, select=args.select_by, next_block=args.next_block, out=out,
                    verbose=args.verbose)
    print(result.table())
    print("\n".join(str(f) for f in result.files))


def _analyze(args: argparse.Namespace) -> None:
    from .analysis.reuse import reuse, write_reuse

    result = reuse(args.run, images=args.images, split=args.split, weights=args.weights, results=args.results)
    print(result.table())
    print("\n".join(str(f) for f in write_reuse(result, args.out or args.run)))


def _evaluate(args: argparse.Namespace) -> None:
    from .api import evaluate

    metrics = evaluate(args.run, args.data, data_root=args.data_root, split=args.split, out=args.out, tta=args.tta)
    print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def _predict(args: argparse.Namespace) -> None:
    import torch

    from .deploy.predict import predict

    if args.threads:
        torch.set_num_threads(args.threads)
    result = predict(args.model, args.inputs, args.out, threshold=args.threshold, tta=args.tta,
                     skip_bad_images=args.skip_bad_images, batch_size=args.batch_size, verbose=not args.quiet)
    print(f"{result.out}: {result.predicted} image(s) predicted" +
          (f", {len(result.skipped)} unreadable file(s) skipped" if result.skipped else ""))


def _export(args: argparse.Namespace) -> None:
    from .deploy.export import export

    print(export(args.run, args.out, args.format).path)


def _cuts(args: argparse.Namespace) -> None:
    from .api import cuts

    rows = [r for r in cuts(args.backbone, args.num_classes, args.image_size, args.in_chans, args.head)
            if args.level is None or r["level"] == args.level]
    print(f"{args.backbone}: {args.num_classes} classes, {args.in_chans}x{args.image_size}x{args.image_size} input, "
          f"{args.head} head")
    print(f"{'cut':<28}{'level':<7}{'feature shape':>16}{'parameters':>14}{'MACs':>10}")
    for r in rows:
        print(f"{r['cut']:<28}{r['level']:<7}{r['feature_shape']:>16}{r['parameters']:>14,}{r['macs'] / 1e9:>9.3f}G")


def _list(args: argparse.Namespace) -> None:
    if args.command == "backbones":
        from .backbones import BACKBONES

        for name, spec in sorted(BACKBONES.items()):
            print(f"{name:<22}{spec.library}:{spec.arch}  (default cut {spec.default_cut})")
        print("also: timm:<name> and torchvision:<name> for other ResNet, DenseNet and EfficientNet models")
    else:
        from .strategies import STRATEGIES

        for name, factory in STRATEGIES.items():
            print(f"{name:<12}{(factory.__doc__ or '').strip().splitlines()[0]}")


def _show_warning(default: typing.Callable) -> typing.Callable:
    """``warnings.showwarning`` that prints medtl's own warnings as ``medtl: warning: ...`` (no source line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, MedtlWarning):
            print(f"medtl: warning: {message}", file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "train"
    if args.command is None:
        args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    handlers = {"train": _train, "compare": _compare, "search": _search, "analyze": _analyze, "evaluate": _evaluate, "predict": _predict, "export": _export, "cuts": _cuts, "backbones": _list, "strategies": _list}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", MedtlWarning)
            warnings.showwarning = _show_warning(warnings.showwarning)
            handlers[command](args)
    except MedtlError as e:
        print(f"medtl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medtl: interrupted; continue with `medtl train --resume RUN`.", file=sys.stderr)
        return 130
    return 0
