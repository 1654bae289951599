"""``medtl`` command line: ``train``, ``evaluate``, ``cuts``, ``backbones``, ``strategies``.

Every ``train`` flag is a :class:`~medtl.config.TrainConfig` field (``--image-size`` = ``image_size:`` in YAML).
Bad input exits with status 2 and a one-paragraph message, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from .config import TrainConfig
from .errors import MedtlError

_HELP = {
    "data": "MedMNIST name (breastmnist, pneumoniamnist_64, ...), an ImageFolder directory, a CSV manifest or an .npz",
    "data_root": "directory holding MedMNIST .npz files",
    "split": "train,val,test fractions for data without given splits",
    "backbone": "backbone name (see `medtl backbones`)",
    "weights": "imagenet, none, or a weights file (.safetensors / tensors-only .pth)",
    "strategy": "transfer strategy (see `medtl strategies`)",
    "cut": "cut point: the last kept layer (see `medtl cuts`); default: the backbone's mid-level default",
    "freeze_to": "lwft: last frozen cut",
    "head": "avg (global average pooling + linear) or flatten (flatten + linear)",
    "image_size": "model input size in pixels",
    "select": "validation metric used to pick the epoch: auroc, auprc or loss",
    "patience": "early stopping: epochs without validation improvement (0: off)",
    "out": "directory that receives run directories",
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

    cuts = sub.add_parser("cuts", help="list a backbone's cut points with shapes, parameters and MACs")
    cuts.add_argument("--backbone", required=True)
    cuts.add_argument("--num-classes", type=int, default=2)
    cuts.add_argument("--image-size", type=int, default=224)
    cuts.add_argument("--in-chans", type=int, default=3)
    cuts.add_argument("--head", default="avg", choices=("avg", "flatten"))
    cuts.add_argument("--level", choices=("stem", "block", "layer"), help="only cuts of this level")

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


def _evaluate(args: argparse.Namespace) -> None:
    from .api import evaluate

    metrics = evaluate(args.run, args.data, data_root=args.data_root, split=args.split, out=args.out)
    print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "train"
    if args.command is None:
        args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    handlers = {"train": _train, "evaluate": _evaluate, "cuts": _cuts, "backbones": _list, "strategies": _list}
    try:
        handlers[command](args)
    except MedtlError as e:
        print(f"medtl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medtl: interrupted; continue with `medtl train --resume RUN`.", file=sys.stderr)
        return 130
    return 0
