"""From a :class:`~medtl.config.TrainConfig` to what a run needs: the device, the data, the pretrained weights and the
strategy. One place, below the API and the analyses, so that ``train``, ``--cut auto``, ``analyze reuse`` and the
benchmarks resolve a configuration the same way."""
from __future__ import annotations

import functools
import logging
import warnings

import torch

from .backbones import Trunk, backbone_cuts, create_backbone, get_spec
from .backbones.weights import read_state_dict
from .config import DEFAULT_IMAGE_SIZE, TrainConfig
from .data import ImageDataset, Reading, load_dataset
from .data.readers import parse_window
from .data.splits import resplit
from .errors import ConfigError, DataError, MedtlWarning
from .model import feature_shape
from .source import SourceRun, is_run_dir, read_source
from .strategies import Strategy, get_strategy, strategy_options

log = logging.getLogger("medtl")
DEFAULT_VOLUME = "acs"  # the 2D-to-3D conversion of volume data without --volume: the 2D parameters, exactly
MAX_VOLUME_SIZE = 256


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
    """The data set exactly as ``cfg`` trains on it: the same source, split fractions, seed, resplit and skipped
    files, so a run's splits can be drawn again (``medtl evaluate RUN`` scores the run's own test images)."""
    data = load_dataset(cfg.data, root=cfg.data_root, image_size=cfg.read_size, split=tuple(cfg.split),
                        seed=cfg.data_seed, skip_bad_images=cfg.skip_bad_images, group_by=cfg.group_by,
                        reading=reading_of(cfg))
    if cfg.resplit is not None:
        data = resplit(data, tuple(cfg.split), cfg.resplit)
    check_splits(data)
    return data


def warn_small_train(data: ImageDataset, cfg: TrainConfig) -> None:
    """Before training (only: scoring a saved run is not training): a batch size above the training split."""
    if len(data.train) < cfg.batch_size:
        warnings.warn(f"the training split has {len(data.train)} images, fewer than the batch size {cfg.batch_size}; "
                      f"each epoch is one batch of {len(data.train)}.", MedtlWarning, stacklevel=2)


def image_size_for(cfg: TrainConfig, data: ImageDataset) -> int:
    """``--image-size``, else the default for ``data``: 64 px for 2D images; for volumes the smallest multiple of the
    backbone's total stride at or above their stored size (MedMNIST's 28^3 -> 32^3). A volume costs the cube of its
    side: 64^3 on 28^3 data is 8 times the voxels of 32^3 (an epoch of AdrenalMNIST3D took 17 CPU minutes and 8 GB)
    for no detail the data holds, while a side below the stride would leave the deepest features mostly padding."""
    if cfg.image_size is not None:
        return cfg.image_size
    if not data.is_volume:
        return DEFAULT_IMAGE_SIZE
    stride = network_stride(cfg.backbone, data.in_chans)
    return max(stride, -(-max(data.image_shape[1:]) // stride) * stride)


STRIDE_PROBE = 256  # px: above the total stride of any supported backbone


@functools.lru_cache(maxsize=32)
def network_stride(backbone: str, in_chans: int = 1) -> int:
    """Total stride of the whole ``backbone`` (the deepest cut), measured on one untrained 2D forward pass."""
    model, _ = create_backbone(backbone, None, in_chans)
    trunk = Trunk(model, backbone_cuts(model)[-1])
    return STRIDE_PROBE // feature_shape(trunk, in_chans, STRIDE_PROBE)[-1]


def reading_of(cfg: TrainConfig) -> Reading:
    """How ``cfg`` reads files: its window and spacing; DICOM by the 2D/3D rule unless ``--dicom`` forces a kind
    (``--volume`` forces 3D)."""
    dicom = cfg.dicom if cfg.dicom != "auto" or cfg.volume is None else "3d"
    return Reading(parse_window(cfg.window), tuple(cfg.spacing) if cfg.spacing else None, dicom)  # type: ignore


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


def volume_of(cfg: TrainConfig, data: ImageDataset) -> str | None:
    """The 2D-to-3D conversion a run on ``data`` uses: ``--volume``, :data:`DEFAULT_VOLUME` for volume data, None for
    images; volume options given for 2D images are refused (they would silently do nothing)."""
    if data.is_volume:
        if (cfg.image_size or 0) > MAX_VOLUME_SIZE:  # the default (None) is sized for the data
            raise ConfigError(f"image_size {cfg.image_size} is above {MAX_VOLUME_SIZE} for volumes ({cfg.image_size}^3 "
                              "voxels each); use a smaller --image-size.")
        return cfg.volume or DEFAULT_VOLUME
    given = [f"--{k.replace('_', '-')}" for k in ("volume", "spacing") if getattr(cfg, k) is not None]
    if cfg.window is not None and "dicom" not in data.source.get("readers", ()):  # 2D DICOM files take a window
        given.append("--window")
    if cfg.flip_axes != "w":
        given.append("--flip-axes")
    if given:
        raise ConfigError(f"{', '.join(given)} apply to volumes, but {data.name} holds 2D images "
                          f"{'x'.join(map(str, data.image_shape))}; drop them (or give volume data; --window also "
                          "applies to DICOM images).")
    return None


def model_weights(cfg: TrainConfig) -> str | dict[str, torch.Tensor] | SourceRun:
    """``--weights`` as the model builder takes it; a pickle file is read here, and only if the user trusts it; a
    run directory becomes a :class:`~medtl.source.SourceRun`."""
    if is_run_dir(cfg.weights):
        return read_source(cfg.weights, cfg.backbone)
    if cfg.trust_pickle and cfg.weights not in ("imagenet", "none", "random"):
        return read_state_dict(cfg.weights, trust_pickle=True)
    return cfg.weights


def make_strategy(cfg: TrainConfig) -> Strategy:
    """The configured strategy; ``truncated`` without a cut takes the backbone's default cut."""
    cut = cfg.cut
    if cfg.strategy == "truncated" and cut is None:
        cut = get_spec(cfg.backbone).default_cut
    return get_strategy(cfg.strategy, cut=cut, **{p: getattr(cfg, p) for p in strategy_options()})
