"""Run configuration: one dataclass whose field names are the command-line flags and the YAML keys.

Precedence: defaults < ``--config FILE`` (YAML) < flags given on the command line.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from .errors import ConfigError, unknown


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved as ``config.yaml`` in the run directory)."""

    # data
    data: str = "breastmnist"
    data_root: str | None = None
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    # model
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    strategy: str = "truncated"
    cut: str | None = None
    freeze_to: str | None = None
    pretrained_lr_scale: float | None = None
    layer_decay: float | None = None
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
    # run
    seed: int = 0
    out: str = "runs"
    name: str | None = None
    device: str = "auto"
    channels_last: bool = True
    threads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        names = [f.name for f in fields(cls)]
        for key in values:
            if key.replace("-", "_") not in names:
                raise unknown(f"key in {source}:", key, names)
        return cls(**{k.replace("-", "_"): v for k, v in values.items()})

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
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, str(path))

    def validate(self) -> "TrainConfig":
        checks = {
            "optimizer": ("adam", "adamw", "sgd"),
            "schedule": ("cosine", "plateau", "constant"),
            "select": ("auroc", "auprc", "loss"),
            "head": ("avg", "flatten"),
        }
        for key, valid in checks.items():
            if getattr(self, key) not in valid:
                raise unknown(key, getattr(self, key), list(valid))
        for key in ("epochs", "batch_size", "image_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}.")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or min(self.split) < 0:
            raise ConfigError(f"split must be three fractions train,val,test summing to 1, got {self.split}.")
        return self
