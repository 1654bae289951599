"""Run configuration: one dataclass whose field names are the command-line flags and the YAML keys.

Each field carries its metadata in one place (:func:`option`): help text, allowed values or range, whether it changes
what a run learns (``run_only`` options do not, so they are left out of a grid run's identity and may change on
``--resume``), whether it is saved to ``config.yaml``, and whether ``medtl compare``/``search`` accept it (a grid sets
``strategy``, ``cut`` and ``seed`` itself). The command line, validation, grid identity and the saved file all read it.

Precedence: defaults < ``--config FILE`` (YAML) < flags given on the command line.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, unknown

MAX_IMAGE_SIZE = 2048  # 2D: 2048² float images are 16 MB each; larger inputs are a typo, not a study
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_CONFIG_BYTES = 1 << 20
DEFAULT_IMAGE_SIZE = 64  # 2D images, and volume files (resized to this cube when read); medtl.resolve.image_size_for
CUT_ESTIMATORS = ("ridge", "logme", "hscore", "nleep", "sfda", "multiexit")  # medtl.analysis.autocut.ESTIMATORS
VOLUME_MODES = ("acs", "i3d", "2.5d")  # 2D-to-3D conversions (medtl.backbones.volume); here: --help stays light
TRACKERS = ("mlflow", "tensorboard")  # medtl.tracking's registry (a test keeps them equal); here: --help stays light


def option(default: Any = None, help: str = "", *, choices: tuple = (), low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False, run_only: bool = False,
           persist: bool = True, grid: bool = True, resume: bool = False, omit_default: bool = False,
           factory: Any = None):
    """A :class:`TrainConfig` field with its metadata.

    Args:
        choices: the allowed values.
        low, high: the allowed range (inclusive unless ``low_open``/``high_open``); numbers must also be finite.
        run_only: does not change what the run learns (threads, output place, speed switches).
        persist: saved to ``config.yaml`` (``trust_pickle`` is not: a file must never make medtl run code).
        grid: ``medtl compare``/``search`` accept it (they set the strategy, cut, seed and name themselves).
        resume: may be given again with ``--resume`` (``epochs`` extends a run; run-only options always may).
        omit_default: left out of ``config.yaml`` and of the fingerprint while at its default, so that runs saved
            before the option existed (and 2D runs, for the volume options) keep their files and fingerprints.
    """
    meta = dict(help=help, choices=choices, low=low, high=high, low_open=low_open, high_open=high_open,
                run_only=run_only, persist=persist, grid=grid, resume=resume or run_only, omit_default=omit_default,
                default=default if factory is None else factory())
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as `config.yaml` in the run directory).

    Each field is a flag of `medtl train` and a YAML key; its help, allowed range and behaviour (`run_only`, saved,
    `--resume`, grids) are its metadata, listed in the command-line reference.
    """

    # data
    data: str = option("breastmnist", "MedMNIST name (breastmnist, pneumoniamnist_64, ...), an ImageFolder "
                       "directory, a CSV manifest or an .npz")
    data_root: str | None = option(None, "directory holding MedMNIST .npz files")
    split: list[float] = option(help="train,val,test fractions for data without given splits",
                                factory=lambda: [0.7, 0.1, 0.2], low=0.0, high=1.0)
    resplit: int | None = option(None, "pool train, val and test and draw a new stratified split (--split fractions) "
                                 "with this seed", low=0, high=MAX_SEED, grid=False)
    split_seed: int | None = option(None, "seed of the splits medtl draws (validation from train, or --split "
                                    "fractions), when it should not follow --seed: a fixed validation split lets the "
                                    "runs of several seeds be compared on, and ensembled over, the same images",
                                    low=0, high=MAX_SEED, omit_default=True)
    skip_bad_images: bool = option(False, "leave unreadable image files out (listed in the run's skipped_files.txt) "
                                   "instead of failing")
    group_by: str | None = option(None, "CSV column of patient/study ids, or a DICOM attribute (PatientID, "
                                  "StudyInstanceUID; stored as salted hashes), that drawn splits keep whole, each "
                                  "group on one side (default: a CSV column named group, if present)")
    # model
    backbone: str = option("efficientnet_lite0", "backbone name (see `medtl backbones`)")
    weights: str = option("imagenet", "imagenet, none, a weights file (.safetensors / tensors-only .pth), or a "
                          "finished medtl run of the same backbone (its trunk is the pretrained source, truncated at "
                          "--cut, which must not be deeper than the run's cut)")
    trust_pickle: bool = option(False, "let --weights FILE be a pickle checkpoint: loading it can run code, so only "
                                "for files you trust (never read from a config file)", persist=False, run_only=True)
    strategy: str = option("truncated", "transfer strategy (see `medtl strategies`)", grid=False)
    cut: str | None = option(None, "cut point: the last kept layer (see `medtl cuts`), or auto (estimated from one "
                             "forward pass of the pretrained backbone; see README 'Choosing the cut'); default: the "
                             "backbone's mid-level default", grid=False)
    cut_estimator: str = option("ridge", "with --cut auto: how the cuts are scored: ridge (leave-one-out probe of the "
                                "pretrained features), logme, hscore, nleep, sfda, or multiexit (one fine-tuning run "
                                "with a head at every cut, about one fine-tune's time); see "
                                "docs/guide/cut-estimators.md", choices=CUT_ESTIMATORS, run_only=True,
                                omit_default=True)
    freeze_to: str | None = option(None, "lwft: last frozen cut", grid=False)
    pretrained_lr_scale: float | None = option(None, "lwft: learning-rate multiplier of the trainable pretrained "
                                               "layers (default 1)", low=0.0, low_open=True)
    layer_decay: float | None = option(None, "llrd: learning-rate decay per unit, from the top (default 0.7)",
                                       low=0.0, high=1.0, low_open=True)
    slim_from: str | None = option(None, "transfusion: last pretrained cut; every later block is thinner and "
                                   "re-initialised", grid=False)
    shrink: int | None = option(None, "transfusion: channel divisor for the blocks after --slim-from (default 2)",
                                low=1, high=64)
    probe_epochs: int | None = option(None, "lp-ft: epochs of linear probing before everything is fine-tuned "
                                      "(default 5); head2toe: epochs of group-lasso training before the feature "
                                      "selection (default 10)", low=1)
    tune: str | None = option(None, "surgical: the group of blocks fine-tuned (a stage such as blocks.1 or layer2, one "
                              "block such as blocks.1.0, or stem)", grid=False, omit_default=True)
    lora_rank: int | None = option(None, "lora: rank of the low-rank update of each convolution (default 8)", low=1,
                                   high=1024, omit_default=True)
    group_lasso: float | None = option(None, "head2toe: weight of the group-lasso penalty on the head's per-feature "
                                       "weight norms (default 1e-3)", low=0.0, omit_default=True)
    keep_features: float | None = option(None, "head2toe: fraction of the pooled features kept after the group-lasso "
                                         "epochs (default 0.2)", low=0.0, high=1.0, low_open=True, omit_default=True)
    head: str = option("avg", "avg (global average pooling + linear) or flatten (flatten + linear)",
                       choices=("avg", "flatten"))
    ordinal_head: bool = option(False, "the classes are ordered grades (class order = label order; at least 3): a "
                                "cumulative-link head, one score and ordered thresholds, P(grade <= k) = "
                                "sigmoid(theta_k - score), trained by its likelihood; reports kappa as --ordinal does")
    volume: str | None = option(None, "volumes: how the 2D pretrained network takes them: acs (each kernel on one of "
                                "the axial, coronal, sagittal views), i3d (kernels inflated along depth) or 2.5d "
                                "(depth-1 kernels); default for volume data: acs", choices=VOLUME_MODES,
                                omit_default=True)
    window: str | None = option(None, "volume and DICOM files: intensity window CENTER,WIDTH in the file's units "
                                "(CT: Hounsfield) or brain, soft-tissue, mediastinum, lung, bone, or none (DICOM: the "
                                "full range of the stored bits); default: a DICOM file's own first window or VOI LUT, "
                                "each volume's min-max", omit_default=True)
    dicom: str = option("auto", "DICOM files: auto (single-frame CR, DX, MG, RF, XA, US, SC files are 2D images, a "
                        "folder of one series along one slice normal is a volume; anything else is refused), 2d "
                        "(every single-frame file an image) or 3d (every folder of DICOM files one series; --volume "
                        "implies it)", choices=("auto", "2d", "3d"), omit_default=True)
    spacing: list[float] | None = option(None, "volume files: resample every volume to this voxel size Z,Y,X (mm) "
                                         "before resizing to --image-size", low=0.0, low_open=True, omit_default=True)
    flip_axes: str = option("w", "volumes: axes the training augmentation flips at random, letters of dhw (depth, "
                            "height, width) or none", omit_default=True)
    image_size: int | None = option(None, "model input size in pixels (default: 64 for 2D images; for volumes the "
                                    "smallest multiple of the network's total stride at or above their stored size, "
                                    "32 for MedMNIST's 28^3)", low=1, high=MAX_IMAGE_SIZE)
    start_size: int | None = option(None, "progressive resizing: train at this size for the first half of the epochs, "
                                    "growing to --image-size by 80%% of them (validation and test at --image-size; "
                                    "early stopping waits for --image-size)",
                                    low=1, high=MAX_IMAGE_SIZE)
    # optimisation
    epochs: int | None = option(None, "training epochs (default: about 64,000 images seen, at least 5 and at most "
                                "30 epochs: 30 on BreastMNIST, 15 on 4,564 chest X-rays; with --resume: extend a run "
                                "to this many)", low=1, high=100_000, resume=True)
    time_limit: str | None = option(None, "time budget for training and validation, e.g. 90s, 10m, 1h30m: the "
                                    "epochs are cut to what fits, from a few timed steps before training starts "
                                    "(give a large --epochs to fill the budget instead)")
    batch_size: int = option(64, "images per training batch (at least 2: BatchNorm)", low=2, high=65_536)
    lr: float = option(1e-3, "peak learning rate", low=0.0, high=10.0, low_open=True)
    weight_decay: float = option(1e-4, "weight decay", low=0.0, high=1.0)
    optimizer: str = option("adamw", "adamw, adam or sgd (Nesterov momentum 0.9)", choices=("adamw", "adam", "sgd"))
    schedule: str = option("cosine", "cosine (with warm-up), plateau (the paper's reduce-on-plateau) or constant",
                           choices=("cosine", "plateau", "constant"))
    warmup_epochs: float | None = option(None, "linear warm-up epochs of the cosine schedule (default: 1, or 5%% of "
                                         "the epochs when that is shorter)", low=0, high=100_000)
    class_weights: bool = option(False, "weight the loss by inverse training class frequency")
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy", low=0.0, high=1.0, high_open=True)
    augment: bool = option(True, "random resized crop + horizontal flip on the training batches")
    crop_scale: list[float] = option(help="random resized crop: min,max fraction of the image area",
                                     factory=lambda: [0.5, 1.0], low=0.0, high=1.0, low_open=True)
    select: str = option("auroc", "validation metric used to pick the epoch: auroc, auprc or loss",
                         choices=("auroc", "auprc", "loss"))
    patience: int | None = option(None, "early stopping: epochs without validation improvement (0: off; default: a "
                                  "third of the epochs, at least 3)", low=0, high=100_000, resume=True)
    target_sensitivity: float | None = option(None, "binary: the decision threshold is the one reaching this "
                                              "sensitivity on validation (default: Youden's J)", low=0.0, high=1.0,
                                              low_open=True, run_only=True)
    # evaluation (of the selected model, after training: they change no weight)
    bootstrap: int = option(2000, "resamples of the stratified bootstrap behind the 95%% confidence intervals "
                                  "(0: none)", low=0, high=1_000_000, run_only=True)
    ordinal: bool = option(False, "the classes are ordered grades (class order = label order): also report "
                           "quadratic-weighted kappa and mean absolute grade error", run_only=True)
    # run
    seed: int = option(0, "random seed (initialisation, batches, augmentation, and the splits medtl draws unless "
                       "--split-seed is given)", low=0, high=MAX_SEED, grid=False)
    out: str = option("runs", "directory that receives run directories", run_only=True)
    name: str | None = option(None, "run directory name (default: timestamp, data, backbone, strategy, cut, seed)",
                              run_only=True, grid=False)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", run_only=True)
    channels_last: bool = option(True, "channels_last memory format (faster convolutions on CPU and GPU)",
                                 run_only=True)
    threads: int | None = option(None, "CPU threads (default: one per core; on a busy machine 1 can be several times "
                                 "faster)", low=1, high=1024, run_only=True)
    precision: str = option("fp32", "fp32, bf16 (autocast; on CPU it pays for ResNets, not EfficientNet-Lite) or "
                            "fp16 (CUDA only, with loss scaling)", choices=("fp32", "bf16", "fp16"))
    compile: bool = option(False, "torch.compile the model (pays only for long runs; see benchmarks/README.md)",
                           run_only=True)
    cudnn_benchmark: bool = option(False, "let cuDNN pick the fastest kernels (GPU; faster, not bit-repeatable)",
                                   run_only=True)
    sync_bn: bool = option(False, "under torchrun on GPUs: BatchNorm statistics over the whole batch (SyncBatchNorm) "
                           "instead of each process's share", run_only=True)
    cache_mb: float = option(2048, "memory bound (MiB) for caching the output of frozen layers; 0 turns the cache "
                             "off", low=0.0, run_only=True)
    report: bool = option(True, "write report.html at the end (a grid writes one for the whole grid, not one per run)",
                          run_only=True)
    checkpoint_every: float = option(60.0, "seconds between checkpoints (one is also written at the end and when "
                                     "interrupted with Ctrl-C or SIGTERM); 0: after every epoch", low=0.0,
                                     run_only=True)
    track: list[str] = option(help="experiment trackers that receive the run as it trains, repeatable or "
                              "comma-separated: mlflow (params, per-epoch and final metrics, tags, artefacts), "
                              "tensorboard (scalars under RUN/tb); pip install \"medtl[track]\"", factory=list,
                              choices=TRACKERS, run_only=True, omit_default=True)
    track_uri: str | None = option(None, "mlflow: tracking URI, a server (http://HOST:PORT) or sqlite:///FILE "
                                   "(default: sqlite:///OUT/mlflow.db beside the runs)", run_only=True,
                                   omit_default=True)
    track_parent: str | None = option(None, "mlflow: id of a run to nest this run under (compare and search nest "
                                      "their runs under a parent run of the grid themselves)", run_only=True,
                                      grid=False, omit_default=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def read_size(self) -> int:
        """The size folder and CSV files are resized to when read: ``image_size``, or the 2D default while the
        data-dependent default is not yet resolved (:func:`medtl.resolve.image_size_for`)."""
        return self.image_size or DEFAULT_IMAGE_SIZE

    @property
    def data_seed(self) -> int:
        """The seed of drawn splits: ``split_seed``, else the run's ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def identity(self) -> dict:
        """The options that change what a run learns: a grid run's name and a checkpoint's fingerprint."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.metadata["run_only"]
                and not _omitted(f, getattr(self, f.name))}

    def fingerprint(self) -> str:
        """A digest of the options that differ from their defaults (a grid run's name): a new option, added at the
        default that keeps the old behaviour, leaves the names of existing grids' runs, and so their results, valid."""
        changed = {k: v for k, v in self.identity().items() if v != default_of(k)}
        return hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        """The saved form (``config.yaml``): every persisted option."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["persist"]
                  and not _omitted(f, getattr(self, f.name))}
        return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> TrainConfig:
        names = [f.name for f in fields(cls)]
        for key in values:
            if str(key).replace("-", "_") not in names:
                raise unknown(f"key in {source}:", str(key), names)
        hints = typing.get_type_hints(cls)
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        return cls(**{k: _coerce(k, v, hints[k], source) for k, v in values.items()})

    @classmethod
    def load(cls, path: str | Path, **overrides) -> TrainConfig:
        """Defaults, then the YAML file, then ``overrides`` (``None`` values do not override)."""
        values = read_yaml(Path(path))
        if any(str(k).replace("-", "_") == "trust_pickle" and v for k, v in values.items()):
            raise ConfigError(f"{path}: trust_pickle cannot be set in a config file (a file must never make medtl run "
                              "code); pass --trust-pickle on the command line if you trust the weights file.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, str(path))

    def validate(self) -> TrainConfig:
        """Every value within its field's choices and range, before anything is loaded or created."""
        if isinstance(self.batch_size, int) and self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: BatchNorm cannot train on batches of one image.")
        for f in fields(self):
            check_value(f.name, getattr(self, f.name), f.metadata)
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or self.split[0] <= 0:
            raise ConfigError(f"split must be three fractions train,val,test (train > 0) summing to 1, got "
                              f"{self.split}.")
        if len(self.crop_scale) != 2 or self.crop_scale[0] > self.crop_scale[1]:
            raise ConfigError(f"crop_scale must be two fractions min,max with 0 < min <= max <= 1, got "
                              f"{self.crop_scale}.")
        if self.time_limit is not None:
            parse_duration(self.time_limit)
        if self.start_size is not None and self.start_size > self.read_size:
            raise ConfigError(f"start_size ({self.start_size}) is the first size of progressive resizing and must not "
                              f"exceed image_size ({self.read_size}).")
        if self.spacing is not None and len(self.spacing) != 3:
            raise ConfigError(f"spacing must be three voxel sizes Z,Y,X in mm, got {self.spacing}.")
        if self.name is not None and (not self.name or any(c in self.name for c in "/\\\0") or self.name in
                                      (".", "..")):
            raise ConfigError(f"name {self.name!r} must be a plain directory name (no '/' or '\\'); the run goes "
                              "under --out.")
        return self


_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^\s*(?:{_NUMBER}\s*h)?\s*(?:{_NUMBER}\s*m(?:in)?)?\s*(?:{_NUMBER}\s*s?)?\s*$")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``90``, ``90s``, ``10m``, ``1h30m`` or ``1.5h``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if match is None or not any(match.groups()):
            raise ConfigError(f"time_limit must be a duration such as 90s, 10m or 1h30m, got {text!r}.")
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * h + 60 * m + s
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"time_limit must be a positive duration, got {text!r}.")
    return seconds


def default_of(name: str) -> Any:
    """The default value of option ``name``."""
    f = next(f for f in fields(TrainConfig) if f.name == name)
    return f.default_factory() if f.default_factory is not MISSING else f.default
def meta_of(name: str) -> dict:
    """The metadata (help, choices, range) of option ``name``."""
    return dict(next(f for f in fields(TrainConfig) if f.name == name).metadata)


def limits(low: float | None = None, high: float | None = None, **kw) -> dict:
    """Metadata holding only a range, for values that are no option but are checked like one (:func:`check_value`):
    ``model.json``'s, and the numeric flags of the commands other than ``train``."""
    return dict(option(low=low, high=high, **kw).metadata)


def _omitted(f: Any, value: Any) -> bool:
    return f.metadata["omit_default"] and value == f.metadata["default"]


def check_value(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """``value`` within the choices and range of field ``name`` (lists are checked item by item)."""
    if value is None:
        return
    for v in value if isinstance(value, list) and meta["choices"] else [value]:
        if meta["choices"] and v not in meta["choices"]:
            raise unknown(name, v, list(meta["choices"]))
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            raise ConfigError(f"{name} must be a finite number, got {v}.")
        low, high = meta["low"], meta["high"]
        too_low = low is not None and (v <= low if meta["low_open"] else v < low)
        too_high = high is not None and (v >= high if meta["high_open"] else v > high)
        if too_low or too_high:
            lo = "" if low is None else f"{'>' if meta['low_open'] else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if meta['high_open'] else '<='} {high:g}"
            raise ConfigError(f"{name} must be {' and '.join(s for s in (lo, hi) if s)}, got {v:g}.")


def grid_refused(values: dict) -> list[str]:
    """Of the options in ``values``, those a grid (``compare``/``search``) sets itself and so refuses."""
    meta = {f.name: f.metadata for f in fields(TrainConfig)}
    return [k for k in values if k in meta and not meta[k]["grid"]]


def resume_refused(values: dict) -> list[str]:
    """Of the options in ``values``, those that cannot change when a run is resumed."""
    meta = {f.name: f.metadata for f in fields(TrainConfig)}
    return [k for k in values if k in meta and not meta[k]["resume"]]


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader without anchors and aliases: a config file needs none, and nested aliases expand a few hundred
    bytes into gigabytes (the "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases (*{event.anchor}) are not allowed in a medtl config file "
                              f"(line {event.start_mark.line + 1}); write the values out.")
        return super().compose_node(parent, index)


def read_yaml(path: Path) -> dict:
    """A config file's mapping, bounded in size and free of aliases; every problem a :class:`ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {path.stat().st_size:,} bytes; a medtl config file is a short list of options "
                          f"(at most {MAX_CONFIG_BYTES:,} bytes).")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of option: value.")
    return values


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """``value`` as the field's type, or a ConfigError naming the key: YAML reads ``lr: 1e-3`` as a string and
    ``epochs: ten`` must not surface as a TypeError from deep inside training."""
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    base = next(a for a in args if a is not type(None)) if type(None) in args else hint
    try:
        if typing.get_origin(base) is list:
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, (list, tuple)) and not any(isinstance(v, bool) for v in items):
                return [float(v) for v in items] if typing.get_args(base) == (float,) else list(items)
        elif base not in (bool, int, float, str):
            return value  # a type this check does not know
        elif isinstance(value, bool):
            if base is bool:
                return value
        elif base is int and (isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            return int(value)
        elif base is float and isinstance(value, (int, float, str)):
            return float(value)
        elif base is str and isinstance(value, (str, int, float)):
            return str(value)
    except (TypeError, ValueError, OverflowError):
        pass
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(base, "a list of numbers")
    raise ConfigError(f"{key} in {source} must be {kind}, got {value!r}.")
