"""One mechanism for every transfer strategy: which layers exist, which start pretrained, which train and at
what learning rate. A strategy is data (a frozen dataclass); the training loop never branches on its name."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


from ..backbones import backbone_cuts, find_cut, get_spec
from ..model import Classifier, build_classifier


@dataclass(frozen=True)
class Strategy:
    """A transfer-learning strategy.

    Attributes:
        name: registry name (``truncated``, ``full``, ...).
        cut: last kept cut; everything above it is discarded. ``None`` keeps the whole backbone.
        pretrained: start the kept layers from pretrained weights (else random initialisation).
        freeze_to: the trunk is frozen from the input up to and including this cut (``"all"``: the whole
            trunk). Frozen means ``requires_grad=False`` and BatchNorm in eval mode (running statistics fixed).
        pretrained_lr_scale: learning-rate multiplier for the trainable pretrained trunk layers.
        layer_decay: layer-wise learning-rate decay: unit ``i`` of ``U`` trains at ``lr * decay**(U-1-i)``.
    """

    name: str
    cut: str | None = None
    pretrained: bool = True
    freeze_to: str | None = None
    pretrained_lr_scale: float = 1.0
    layer_decay: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def with_params(self, **params) -> "Strategy":
        return replace(self, **params)

    def build(self, backbone: str, num_classes: int, *, weights: str | None = "imagenet", **kwargs) -> Classifier:
        """The classifier this strategy trains; ``kwargs`` go to :func:`medtl.model.build_classifier`."""
        model = build_classifier(backbone, num_classes, cut=self.cut, weights=weights if self.pretrained else None,
                                 **kwargs)
        for path in self.frozen_units(model):
            for p in model.trunk.get_submodule(path).parameters():
                p.requires_grad_(False)
        return model

    def frozen_units(self, model: Classifier) -> list[str]:
        """Trunk unit paths that stay frozen."""
        if self.freeze_to is None:
            return []
        if self.freeze_to == "all":
            return list(model.spec.units)
        cut = find_cut(backbone_cuts(get_spec(model.spec.backbone).create()), self.freeze_to)
        return [u for u in model.spec.units if u in cut.units]

    def train_mode(self, model: Classifier) -> None:
        """``model.train()``, except frozen units, which stay in eval mode so their BatchNorm statistics stay fixed."""
        model.train()
        for path in self.frozen_units(model):
            model.trunk.get_submodule(path).eval()

    def param_groups(self, model: Classifier, lr: float) -> list[dict]:
        """Optimizer parameter groups with explicit per-group learning rates (so they take effect with any
        optimizer and scheduler), one group per trunk unit plus the head; frozen parameters are left out."""
        units = list(model.spec.units)
        groups = []
        for i, path in enumerate(units):
            params = [p for p in model.trunk.get_submodule(path).parameters() if p.requires_grad]
            if not params:
                continue
            scale = self.pretrained_lr_scale if self.pretrained else 1.0
            if self.layer_decay is not None:
                scale *= self.layer_decay ** (len(units) - 1 - i)
            groups.append({"params": params, "lr": lr * scale, "name": path})
        groups.append({"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr, "name": "head"})
        return groups
