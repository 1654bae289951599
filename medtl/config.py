"""Run configuration: one dataclass whose field names are the command-line flags and the YAML keys.

Precedence: defaults < ``--config FILE`` (YAML) < flags given on the command line.
"""
from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, unknown


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as ``config.yaml`` in the run directory)."""

    # data
    data: str = "breastmnist"
    data_root: str | None = None
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    resplit: int | None = None
    skip_bad_images: bool = False
    # model
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    trust_pickle: bool = False  # given per command only: never read from, or saved to, a config file
    strategy: str = "truncated"
    cut: str | None = None
    freeze_to: str | None = None
    pretrained_lr_scale: float | None = None
    layer_decay: float | None = None
    slim_from: str | None = None
    shrink: int | None = None
    probe_epochs: int | None = None
    head: str = "avg"
    image_size: int = 64
    # optimisation
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: int = 1
    class_weights: bool = False
    label_smoothing: float = 0.0
    augment: bool = True
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    select: str = "auroc"
    patience: int = 10
    target_sensitivity: float | None = None  # binary: threshold reaching this validation sensitivity (else Youden's J)
    # run
    seed: int = 0
    out: str = "runs"
    name: str | None = None
    device: str = "auto"
    channels_last: bool = True
    threads: int | None = None
    precision: str = "fp32"
    compile: bool = False
    cudnn_benchmark: bool = False
    cache_mb: float = 2048

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        values = {k: v for k, v in self.to_dict().items() if k != "trust_pickle"}
        path.write_text(yaml.safe_dump(values, sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        names = [f.name for f in fields(cls)]
        for key in values:
            if key.replace("-", "_") not in names:
                raise unknown(f"key in {source}:", key, names)
        hints = typing.get_type_hints(cls)
        values = {k.replace("-", "_"): v for k, v in values.items()}
        return cls(**{k: _coerce(k, v, hints[k], source) for k, v in values.items()})

    @classmethod
    def load(cls, path: str | Path, **overrides) -> "TrainConfig":
        """Defaults, then the YAML file, then ``overrides`` (``None`` values do not override)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a mapping of option: value.")
        if any(str(k).replace("-", "_") == "trust_pickle" and v for k, v in values.items()):
            raise ConfigError(f"{path}: trust_pickle cannot be set in a config file (a file must never make medtl run "
                              "code); pass --trust-pickle on the command line if you trust the weights file.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, str(path))

    def validate(self) -> "TrainConfig":
        checks = {
            "optimizer": ("adam", "adamw", "sgd"),
            "schedule": ("cosine", "plateau", "constant"),
            "select": ("auroc", "auprc", "loss"),
            "head": ("avg", "flatten"),
            "precision": ("fp32", "bf16", "fp16"),
        }
        for key, valid in checks.items():
            if getattr(self, key) not in valid:
                raise unknown(key, getattr(self, key), list(valid))
        for key in ("epochs", "batch_size", "image_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}.")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: BatchNorm cannot train on batches of one image.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}.")
        if self.target_sensitivity is not None and not 0 < self.target_sensitivity <= 1:
            raise ConfigError(f"target_sensitivity must be in (0, 1], got {self.target_sensitivity}.")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or min(self.split) < 0:
            raise ConfigError(f"split must be three fractions train,val,test summing to 1, got {self.split}.")
        return self


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
    except (TypeError, ValueError):
        pass
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(base, "a list of numbers")
    raise ConfigError(f"{key} in {source} must be {kind}, got {value!r}.")
