"""The classifier medtl trains: a (possibly truncated) pretrained trunk plus a new head."""
from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields

import torch
from torch import nn

from .backbones import Trunk, backbone_cuts, create_backbone, find_cut, get_spec, slim_backbone
from .backbones.volume import to_volume
from .config import check_value, limits, meta_of
from .errors import ConfigError
from .formats import KEY as FORMAT_KEY
from .formats import format_version

HEADS = ("avg", "flatten")


class CumulativeLink(nn.Module):
    """The cumulative-logit (proportional-odds) model of ordered grades (McCullagh 1980): one score ``s`` per image
    and ``K - 1`` increasing thresholds ``theta``, ``P(grade <= k) = sigmoid(theta_k - s)``. A higher score moves
    probability to higher grades, for every grade at once, which is what an ordered scale means.

    It returns log class probabilities: softmax gives the probabilities back exactly, cross-entropy on them is the
    model's negative log-likelihood, and temperature scaling tempers them, so the rest of medtl treats them as logits.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 3:
            raise ConfigError(f"an ordinal head needs at least 3 ordered classes, got {num_classes}.")
        start = torch.logit(torch.arange(1, num_classes) / num_classes)  # equal class probabilities at score 0
        self.first = nn.Parameter(start[:1].clone())
        self.gaps = nn.Parameter(start.diff() + torch.log(-torch.expm1(-start.diff())))  # softplus(gaps) = diffs

    def thresholds(self) -> torch.Tensor:
        gaps = nn.functional.softplus(self.gaps).clamp(min=1e-6)
        return torch.cat([self.first, self.first + torch.cumsum(gaps, 0)])

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        theta = self.thresholds()
        a = theta - score  # (N, K-1): logits of P(grade <= k)
        logsigmoid = nn.functional.logsigmoid
        # P(k) = sigmoid(a_k) - sigmoid(a_{k-1}) = sigmoid(a_k) sigmoid(-a_{k-1}) (1 - exp(-(theta_k - theta_{k-1})))
        middle = logsigmoid(a[:, 1:]) + logsigmoid(-a[:, :-1]) + torch.log(-torch.expm1(-theta.diff()))
        return torch.cat([logsigmoid(a[:, :1]), middle, logsigmoid(-a[:, -1:])], dim=1)


class Head(nn.Module):
    """Global average pooling + linear (``avg``, the default) or flatten + linear on the whole map (``flatten``,
    the TruncatedTL code's default; much larger at shallow cuts). With ``ordinal`` the linear layer gives one score
    and a :class:`CumulativeLink` turns it into (log) probabilities of ordered grades."""

    def __init__(self, feature_shape: tuple[int, ...], num_classes: int, kind: str = "avg",
                 ordinal: bool = False):
        super().__init__()
        if kind not in HEADS:
            raise ConfigError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}.")
        c, *space = feature_shape  # (C, H, W), or (C, D, H, W) for volumes
        pool = nn.AdaptiveAvgPool3d if len(space) == 3 else nn.AdaptiveAvgPool2d
        self.pool = pool(1) if kind == "avg" else nn.Identity()
        self.fc = nn.Linear(c if kind == "avg" else c * math.prod(space), 1 if ordinal else num_classes)
        self.link = CumulativeLink(num_classes) if ordinal else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.flatten(self.pool(features), 1))
        return out if self.link is None else self.link(out)


# model.json values are bounded as the options they come from are (a file may come from anyone)
SPEC_LIMITS = {"image_size": meta_of("image_size"), "read_size": meta_of("image_size"), "shrink": meta_of("shrink"),
               "num_classes": limits(1, 100_000), "in_chans": limits(1, 64), "threshold": limits(0, 1),
               "temperature": limits(0, low_open=True)}


class TapHead(nn.Module):
    """Head2Toe's head (Evci et al., ICML 2022): the global-average-pooled output of every tapped trunk unit,
    concatenated, standardised (BatchNorm without scale and shift), multiplied by the mask of selected features, and
    one linear layer. The mask is a buffer, so the features a run selected are saved with its weights."""

    mask: torch.Tensor

    def __init__(self, channels: list[int], num_classes: int, dims: int = 2):
        super().__init__()
        total = sum(channels)
        self.pool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.norm = nn.BatchNorm1d(total, affine=False)
        self.register_buffer("mask", torch.ones(total))
        self.fc = nn.Linear(total, num_classes)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([torch.flatten(self.pool(f), 1) for f in features], dim=1)
        return self.fc(self.norm(x) * self.mask)

    def group_lasso(self) -> torch.Tensor:
        """Sum over the features of the L2 norm of each feature's weights (one group per input of the linear layer)."""
        return self.fc.weight.norm(dim=0).sum()

    @torch.no_grad()
    def select(self, keep: float) -> None:
        """Keep the ``keep`` fraction of features with the largest weight norms (once: an existing selection stays)."""
        if not bool(self.mask.all()):
            return
        norms = self.fc.weight.norm(dim=0)
        chosen = norms.topk(max(1, math.ceil(keep * norms.numel()))).indices
        self.mask.zero_()
        self.mask[chosen] = 1.0


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained classifier without medtl's training code (saved as `model.json`)."""

    backbone: str
    library: str
    arch: str
    cut: str
    units: list[str]
    head: str
    num_classes: int
    in_chans: int
    image_size: int
    mean: list[float]
    std: list[float]
    classes: list[str] = field(default_factory=list)
    task: str = "multiclass"
    partial: list | None = None
    slim_from: str | None = None  # TransFusion: blocks after this cut have 1/shrink of their channels
    shrink: int | None = None
    temperature: float | None = None  # temperature scaling fitted on the validation split (None: not fitted)
    # Binary tasks: an image is called positive when P(classes[1]) >= threshold, chosen on the validation split
    # (medtl.evaluation.threshold); None: other tasks, and older binary runs (then 0.5).
    threshold: float | None = None
    # Image files are resized to read_size x read_size as the training data's loader stored them (MedMNIST: its native
    # size; folders and CSVs: image_size), then Preprocess resizes to image_size: so files are seen as in training.
    # None (older runs): image_size.
    read_size: int | None = None
    ordinal_head: bool = False  # a CumulativeLink head over ordered classes (its outputs are log probabilities)
    volume: str | None = None  # 2D weights converted for volumes (acs, i3d, 2.5d); None: a 2D model
    window: str | None = None  # --window the training data was read with (DICOM, volumes); None: the files' own
    taps: list[str] | None = None  # Head2Toe: the units whose pooled outputs feed a TapHead; None: the usual head

    def to_dict(self) -> dict:
        values = asdict(self)
        for key in ("volume", "window", "taps"):  # a model.json stays as it was before these options existed
            if values[key] is None:
                del values[key]
        return values

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape: ``(C, S, S)``, or ``(C, S, S, S)`` for a volume model."""
        return (self.in_chans, *[self.image_size] * (3 if self.volume else 2))

    @classmethod
    def from_dict(cls, values: dict, source: str = "model.json") -> ModelSpec:
        """A spec from a saved ``model.json``, every field checked against its type: the file may come from anyone,
        and a wrong type must stop here with a message, not deep inside model building."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must hold a JSON object.")
        format_version(values, source)
        values = {k: v for k, v in values.items() if k != FORMAT_KEY}
        hints = typing.get_type_hints(cls)
        names = {f.name for f in fields(cls)}
        extra, missing = set(values) - names, {f.name for f in fields(cls) if f.default is MISSING and
                                                f.default_factory is MISSING} - set(values)
        if extra or missing:
            raise ConfigError(f"{source} is not a valid medtl model description: "
                              f"{'unknown keys ' + ', '.join(sorted(extra)) if extra else ''}"
                              f"{'; ' if extra and missing else ''}"
                              f"{'missing keys ' + ', '.join(sorted(missing)) if missing else ''}.")
        for key, value in values.items():
            if not _is_type(value, hints[key]):
                raise ConfigError(f"{source}: {key} has the wrong type ({type(value).__name__}: {value!r:.60}).")
            if key in SPEC_LIMITS:
                try:
                    check_value(key, value, SPEC_LIMITS[key])
                except ConfigError as e:
                    raise ConfigError(f"{source}: {e} The file is damaged or was not written by medtl.") from None
        return cls(**values)


def _is_type(value, hint) -> bool:
    """``value`` (parsed JSON) matches ``hint`` (str, int, float, list[...], X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and (not args or all(_is_type(v, args[0]) for v in value))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return origin is None and hint is list and isinstance(value, list) or hint is typing.Any


class Classifier(nn.Module):
    """``head(trunk(x))``; ``spec`` records how it was built."""

    def __init__(self, trunk: Trunk, head: Head | TapHead, spec: ModelSpec):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.spec = spec

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits; with ``start > 0``, ``x`` is the output of the trunk's first ``start`` units (a cached prefix)."""
        if self.spec.taps is None:
            return self.head(self.trunk.run(x, start))
        if start:
            raise ValueError("a Head2Toe model reads every unit's output: it cannot start from a cached prefix")
        return self.head(tapped(self.trunk, x, self.spec.taps))


def tapped(trunk: Trunk, x: torch.Tensor, taps: list[str]) -> list[torch.Tensor]:
    """The outputs of the units ``taps`` for the input ``x``, running the trunk once."""
    outputs = []
    for path in trunk.units:
        x = trunk.get_submodule(path)(x)
        if path in taps:
            outputs.append(x)
    return outputs


def feature_shape(trunk: nn.Module, in_chans: int, image_size: int, dims: int = 2) -> tuple[int, ...]:
    """Output shape (C, H, W) of the trunk for one image, or (C, D, H, W) for one volume (``dims=3``).

    Raises a clear error when the image is smaller than the cut's total stride: its features would then be
    computed mostly from padding (a 1x1 map is checked against the stride measured at 256 px; 64 voxels for volumes,
    above the largest total stride, 32, of the supported backbones).
    """
    reference = 256 if dims == 2 else 64

    def probe(size: int) -> torch.Size:
        with torch.no_grad():
            return trunk(torch.zeros(1, in_chans, *[size] * dims)).shape

    was_training = trunk.training
    trunk.eval()
    try:
        shape = probe(image_size)
        stride = reference // probe(reference)[-1] if shape[-1] == 1 and image_size < reference else 1
    except RuntimeError:  # the input shrank to nothing before the cut
        stride = None
    finally:
        trunk.train(was_training)
    if stride is None or image_size < stride:
        raise ConfigError(
            f"an image size of {image_size} px is too small for this cut (total stride {stride or '?'}); "
            "use a larger --image-size or an earlier --cut."
        )
    return tuple(shape[1:])


def build_classifier(
        backbone: str,
        num_classes: int,
        *,
        cut: str | None = None,
        weights: str | None = "imagenet",
        in_chans: int = 3,
        image_size: int = 224,
        head: str = "avg",
        classes: list[str] | None = None,
        task: str = "multiclass",
        slim_from: str | None = None,
        shrink: int = 2,
        ordinal_head: bool = False,
        volume: str | None = None,
        taps: list[str] | str | None = None,
) -> Classifier:
    """Create a backbone with its weights, drop everything after the cut and attach a freshly initialised head.

    Args:
        backbone: a backbone name (`medtl backbones`), `timm:<name>` or `torchvision:<name>`.
        num_classes: outputs of the head.
        cut: the last kept cut point (`medtl cuts`); None keeps the whole backbone.
        weights: `"imagenet"`, None (random) or a weights file.
        in_chans: input channels (grey images meet RGB weights by summing the first convolution's kernels).
        image_size: input side, for the head's input shape.
        head: `"avg"` (pooled) or `"flatten"`.
        classes: class names, stored in the model's spec.
        task: `"binary"`, `"multiclass"` or `"multilabel"`.
        slim_from: TransFusion: the blocks after this cut are rebuilt with 1/`shrink` of their channels and random
            weights.
        shrink: channel divisor for `slim_from`.
        ordinal_head: a cumulative-link head over the classes in their order (`CumulativeLink`).
        volume: `"acs"`, `"i3d"` or `"2.5d"`: the kept trunk is converted to take volumes, its 2D weights made 3D
            (`medtl.backbones.volume`).
        taps: Head2Toe: the units, or `"all"` of them, whose pooled outputs feed a `TapHead` instead of the usual
            head.

    Returns:
        The classifier (trunk + head) with its `ModelSpec`.
    """
    model, spec = create_backbone(backbone, weights, in_chans)
    cuts = backbone_cuts(model)
    chosen = find_cut(cuts, cut) if cut else cuts[-1]
    if slim_from is not None:
        if len(find_cut(cuts, slim_from).units) >= len(chosen.units):
            raise ConfigError(f"the slim point {slim_from!r} must come before the cut {chosen.name!r}: nothing kept "
                              "would be slimmed.")
        slim_backbone(model, slim_from, shrink)
    trunk = Trunk(model, chosen)
    if volume is not None:
        to_volume(trunk, volume)
    shape = feature_shape(trunk, in_chans, image_size, 3 if volume else 2)
    tap_units = list(chosen.units) if taps == "all" else None if taps is None else list(taps)
    if tap_units is not None:
        unknown = [t for t in tap_units if t not in chosen.units]
        if unknown or ordinal_head or head != "avg":
            raise ConfigError(f"a Head2Toe head reads units of the kept trunk ({', '.join(unknown) or 'ok'}) through "
                              "average pooling; it takes neither --head flatten nor --ordinal-head.")
    model_spec = ModelSpec(
        backbone=backbone, library=spec.library, arch=spec.arch, cut=chosen.name, units=list(chosen.units),
        head=head, num_classes=num_classes, in_chans=in_chans, image_size=image_size,
        mean=list(spec.mean), std=list(spec.std), classes=list(classes or []), task=task,
        partial=list(chosen.partial) if chosen.partial else None,
        slim_from=slim_from, shrink=shrink if slim_from is not None else None, ordinal_head=ordinal_head,
        volume=volume, taps=tap_units,
    )
    if tap_units is not None:
        with torch.no_grad():
            trunk.eval()
            channels = [f.shape[1] for f in tapped(trunk, torch.zeros(1, in_chans, *[image_size] * len(shape[1:])),
                                                   tap_units)]
            trunk.train()
        return Classifier(trunk, TapHead(channels, num_classes, len(shape) - 1), model_spec)
    return Classifier(trunk, Head(shape, num_classes, head, ordinal_head), model_spec)


def rebuild(spec: ModelSpec) -> Classifier:
    """An untrained classifier with exactly the architecture that ``spec`` describes (for reloading)."""
    get_spec(spec.backbone)  # validates the name
    model = build_classifier(
        spec.backbone, spec.num_classes, cut=spec.cut, weights=None, in_chans=spec.in_chans,
        image_size=spec.image_size, head=spec.head, classes=spec.classes, task=spec.task,
        slim_from=spec.slim_from, shrink=spec.shrink or 2, ordinal_head=spec.ordinal_head, volume=spec.volume,
        taps=spec.taps,
    )
    model.spec.temperature = spec.temperature  # fitted after training: not part of the architecture
    model.spec.threshold, model.spec.read_size = spec.threshold, spec.read_size  # how it is used, not built
    model.spec.window = spec.window
    return model
