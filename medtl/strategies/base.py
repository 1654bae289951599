"""One mechanism for every transfer strategy: which layers exist, which start pretrained, which train and at
what learning rate. A strategy is data (a frozen dataclass); the training loop never branches on its name."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache

from ..backbones import backbone_cuts, find_cut, get_spec
from ..model import Classifier, build_classifier
from ..source import SourceRun


@dataclass(frozen=True)
class Strategy:
    """A transfer-learning strategy.

    Attributes:
        name: registry name (`truncated`, `full`, ...).
        cut: last kept cut; everything above it is discarded. `None` keeps the whole backbone.
        pretrained: start the kept layers from pretrained weights (else random initialisation).
        freeze_to: the trunk is frozen from the input up to and including this cut (`"all"`: the whole
            trunk). Frozen means `requires_grad=False` and BatchNorm in eval mode (running statistics fixed).
        pretrained_lr_scale: learning-rate multiplier for the trainable pretrained trunk layers.
        layer_decay: layer-wise learning-rate decay: unit `i` of `U` trains at `lr * decay**(U-1-i)`.
        slim_from: TransFusion: the blocks after this cut are rebuilt with 1/`shrink` of their channels and
            random weights (the layers up to it keep their pretrained weights and BatchNorm statistics).
        shrink: channel divisor for `slim_from`.
        probe_epochs: linear probe first: for these epochs the whole trunk is frozen (as in `freeze_to="all"`),
            then it is fine-tuned (LP-FT, Kumar et al. 2022), so the new head does not distort pretrained features.
    """

    name: str
    cut: str | None = None
    pretrained: bool = True
    freeze_to: str | None = None
    pretrained_lr_scale: float = 1.0
    layer_decay: float | None = None
    slim_from: str | None = None
    shrink: int = 2
    probe_epochs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def with_params(self, **params) -> "Strategy":
        return replace(self, **params)

    def build(self, backbone: str, num_classes: int, *, weights: str | SourceRun | None = "imagenet",
              **kwargs) -> Classifier:
        """The classifier this strategy trains; ``kwargs`` go to :func:`medtl.model.build_classifier`. With a
        :class:`~medtl.source.SourceRun`, the layers that start pretrained (up to the slim point for TransFusion)
        take the source run's weights."""
        source = weights if isinstance(weights, SourceRun) and self.pretrained else None
        model = build_classifier(backbone, num_classes, cut=self.cut,
                                 weights=weights if self.pretrained and source is None else None,
                                 slim_from=self.slim_from, shrink=self.shrink, **kwargs)
        if source is not None:
            source.load_into(model, self.slim_from or model.spec.cut)
        self.train_mode(model, epoch=1)
        return model

    def frozen_units(self, model: Classifier, epoch: int | None = None) -> list[str]:
        """Trunk unit paths frozen in ``epoch`` (1-based; ``None``: after any linear-probe phase), always a prefix
        of the trunk's units."""
        probing = epoch is not None and epoch <= self.probe_epochs
        if probing or self.freeze_to == "all":
            return list(model.spec.units)
        if self.freeze_to is None:
            return []
        frozen = cut_units(model.spec.backbone, self.freeze_to)
        return [u for u in model.spec.units if u in frozen]

    def train_mode(self, model: Classifier, epoch: int | None = None) -> int:
        """Set ``model`` up for training in ``epoch``: frozen units get ``requires_grad=False`` and stay in eval mode
        (so their BatchNorm statistics stay fixed), every other layer trains. Returns how many leading trunk units
        are frozen (their output can be cached)."""
        frozen = set(self.frozen_units(model, epoch))
        model.train()
        for path in model.spec.units:
            unit = model.trunk.get_submodule(path)
            unit.requires_grad_(path not in frozen)
            if path in frozen:
                unit.eval()
        return len(frozen)

    def param_groups(self, model: Classifier, lr: float) -> list[dict]:
        """Optimizer parameter groups with explicit per-group learning rates (so they take effect with any
        optimizer and scheduler), one group per trunk unit plus the head; parameters frozen for good are left out
        (those frozen only for a probe phase are included: they get no gradient, so the optimizer skips them)."""
        units = list(model.spec.units)
        never_trained = set(self.frozen_units(model))
        groups = []
        for i, path in enumerate(units):
            params = list(model.trunk.get_submodule(path).parameters())
            if path in never_trained or not params:
                continue
            scale = self.pretrained_lr_scale if self.pretrained else 1.0
            if self.layer_decay is not None:
                scale *= self.layer_decay ** (len(units) - 1 - i)
            groups.append({"params": params, "lr": lr * scale, "name": path})
        groups.append({"params": list(model.head.parameters()), "lr": lr, "name": "head"})
        return groups


@lru_cache(maxsize=64)
def cut_units(backbone: str, cut: str) -> tuple[str, ...]:
    """The unit paths a cut of ``backbone`` keeps (building the backbone once per name, not once per epoch)."""
    return find_cut(backbone_cuts(get_spec(backbone).create()), cut).units
