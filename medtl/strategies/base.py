"""One mechanism for every transfer strategy: which layers exist, which start pretrained, which train and at
what learning rate. A strategy is data (a frozen dataclass); the training loop never branches on its name.

Parameter-efficient methods (BitFit, SSF, LoRA) are :class:`Adapter` objects registered by name in
:data:`ADAPTERS`: they add parameters to (or pick them in) a trunk whose pretrained weights and BatchNorm statistics
stay frozen, and fold what they learned back into plain weights before the model is saved (:meth:`Strategy.merged`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import torch
from torch import nn

from ..backbones import backbone_cuts, find_cut, get_spec
from ..errors import ConfigError
from ..model import Classifier, build_classifier
from ..source import SourceRun
from .autorgn import RelativeGradientNorm


class Adapter:
    """A parameter-efficient method: the trunk is frozen (weights and BatchNorm statistics, so what a task stores is
    only what the adapter trains, plus the head); the adapter says which parameters train instead."""

    def attach(self, model: Classifier, strategy: Strategy) -> None:
        """Add the adapter's modules to ``model`` (in place), after the pretrained weights are loaded. Default: none."""

    def trainable(self, model: Classifier) -> Iterable[nn.Parameter]:
        """The trunk parameters that train."""
        raise NotImplementedError

    def merge(self, model: Classifier) -> Classifier:
        """``model`` with what the adapter learned folded into plain weights (the architecture ``model.json``
        describes), so export, predict and explain see an ordinary classifier. Default: nothing to fold."""
        return model


#: adapters by name (filled by :mod:`medtl.strategies`); a strategy names its adapter, so it stays plain data
ADAPTERS: dict[str, Adapter] = {}
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


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
        tune: surgical fine-tuning: only the trunk units of this group train (a stage such as ``blocks.1``, a block
            such as ``blocks.1.0``, or ``stem``); every other unit is frozen, BatchNorm statistics included.
        rgn: Auto-RGN: every weight tensor trains at ``lr`` times its relative gradient norm ``||g|| / ||w||``
            normalised by the largest one, measured on the first batches of each epoch; normalisation layers'
            parameters are frozen (Lee et al. 2023).
        adapter: a parameter-efficient method of :data:`ADAPTERS` (``bitfit``, ``ssf``, ``lora``).
        lora_rank: rank of LoRA's low-rank update of each convolution kernel.
        taps: Head2Toe: the frozen trunk's every unit feeds a linear head through global average pooling; during the
            first ``probe_epochs`` epochs a group-lasso penalty ``group_lasso`` sums the norms of each feature's
            weights, then only the ``keep_features`` fraction of features with the largest norms is kept.
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
    tune: str | None = None
    rgn: bool = False
    adapter: str | None = None
    lora_rank: int = 8
    taps: bool = False
    group_lasso: float = 0.0
    keep_features: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    def with_params(self, **params) -> Strategy:
        return replace(self, **params)

    def build(self, backbone: str, num_classes: int, *, weights: str | SourceRun | None = "imagenet",
              **kwargs) -> Classifier:
        """The classifier this strategy trains; ``kwargs`` go to :func:`medtl.model.build_classifier`. With a
        :class:`~medtl.source.SourceRun`, the layers that start pretrained (up to the slim point for TransFusion)
        take the source run's weights."""
        source = weights if isinstance(weights, SourceRun) and self.pretrained else None
        model = build_classifier(backbone, num_classes, cut=self.cut,
                                 weights=weights if self.pretrained and source is None else None,
                                 slim_from=self.slim_from, shrink=self.shrink, taps="all" if self.taps else None,
                                 **kwargs)
        if source is not None:
            source.load_into(model, self.slim_from or model.spec.cut)
        if self.adapter is not None:
            ADAPTERS[self.adapter].attach(model, self)
        self.train_mode(model, epoch=1)
        return model

    def merged(self, model: Classifier) -> Classifier:
        """The trained ``model`` as a plain classifier (an adapter's updates folded into the weights)."""
        return model if self.adapter is None else ADAPTERS[self.adapter].merge(model)

    def frozen_units(self, model: Classifier, epoch: int | None = None) -> list[str]:
        """Trunk unit paths frozen as a whole in ``epoch`` (1-based; ``None``: after any linear-probe phase): a prefix
        of the trunk's units, or (surgical fine-tuning) every unit outside the tuned group."""
        probing = epoch is not None and epoch <= self.probe_epochs
        if probing or self.freeze_to == "all":
            return list(model.spec.units)
        if self.tune is not None:
            tuned = set(tune_units(model, self.tune))
            return [u for u in model.spec.units if u not in tuned]
        if self.freeze_to is None:
            return []
        frozen = cut_units(model.spec.backbone, self.freeze_to)
        return [u for u in model.spec.units if u in frozen]

    def train_mode(self, model: Classifier, epoch: int | None = None) -> int:
        """Set ``model`` up for training in ``epoch``: frozen units get ``requires_grad=False`` and stay in eval mode
        (so their BatchNorm statistics stay fixed), every other layer trains; with an adapter the whole trunk is
        frozen and only the adapter's parameters train. Returns how many leading trunk units are frozen (their output
        can be cached)."""
        frozen = set(self.frozen_units(model, epoch))
        adapter = ADAPTERS[self.adapter] if self.adapter is not None and len(frozen) < len(model.spec.units) else None
        model.train()
        for path in model.spec.units:
            unit = model.trunk.get_submodule(path)
            unit.requires_grad_(path not in frozen and adapter is None)
            if path in frozen or adapter is not None:
                unit.eval()
        if adapter is not None:
            for p in adapter.trainable(model):
                p.requires_grad_(True)
        if self.rgn:  # Auto-RGN leaves normalisation parameters out (their statistics still follow the data)
            for m in model.trunk.modules():
                if isinstance(m, NORMS):
                    m.requires_grad_(False)
        if self.taps and epoch == self.probe_epochs + 1 and self.keep_features < 1:
            model.head.select(self.keep_features)
        return 0 if model.spec.taps else _frozen_prefix(model)

    def penalty(self, model: Classifier, epoch: int) -> torch.Tensor | float:
        """A term added to the training loss in ``epoch`` (Head2Toe's group lasso before the selection). Default: 0."""
        if self.group_lasso and epoch <= self.probe_epochs:
            return self.group_lasso * model.head.group_lasso()
        return 0.0

    def param_groups(self, model: Classifier, lr: float) -> list[dict]:
        """Optimizer parameter groups with explicit per-group learning rates (so they take effect with any
        optimizer and scheduler), one group per trunk unit plus the head; parameters frozen for good are left out
        (those frozen only for a probe phase are included: they get no gradient, so the optimizer skips them)."""
        units = list(model.spec.units)
        never_trained = set(self.frozen_units(model))
        trained = self._trained(model)
        groups = []
        for i, path in enumerate(units):
            params = [p for p in model.trunk.get_submodule(path).parameters() if id(p) in trained]
            if path in never_trained or not params:
                continue
            scale = self.pretrained_lr_scale if self.pretrained else 1.0
            if self.layer_decay is not None:
                scale *= self.layer_decay ** (len(units) - 1 - i)
            groups.append({"params": params, "lr": lr * scale, "name": path})
        groups.append({"params": list(model.head.parameters()), "lr": lr, "name": "head", "new": True})
        if self.rgn:  # one group per tensor: Auto-RGN sets each tensor's rate (RelativeGradientNorm)
            names = {id(p): n for n, p in model.named_parameters()}
            groups = [{**g, "params": [p], "name": names[id(p)]} for g in groups for p in g["params"]]
        return groups

    def _trained(self, model: Classifier) -> set[int]:
        """Ids of the trunk parameters that train after any probe phase (those of frozen units are left out later)."""
        if self.adapter is not None:
            return {id(p) for p in ADAPTERS[self.adapter].trainable(model)}
        norms = {id(p) for m in model.trunk.modules() if isinstance(m, NORMS) for p in m.parameters()}
        return {id(p) for p in model.trunk.parameters() if not (self.rgn and id(p) in norms)}

    def attach_optimizer(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> None:
        """Let the strategy steer ``optimizer`` while it trains (Auto-RGN's per-tensor rates). Default: nothing."""
        if self.rgn:
            RelativeGradientNorm(optimizer, steps_per_epoch)


def _frozen_prefix(model: Classifier) -> int:
    """How many leading trunk units neither train nor update statistics: their output can be computed once."""
    count = 0
    for path in model.spec.units:
        unit = model.trunk.get_submodule(path)
        if any(p.requires_grad for p in unit.parameters()) or any(m.training for m in unit.modules()):
            break
        count += 1
    return count


def tune_units(model: Classifier, group: str) -> list[str]:
    """The kept trunk units of the group ``group``: ``stem``, a stage (``blocks.1``: its blocks) or one unit."""
    units = list(model.spec.units)
    if group == "stem":
        chosen = [u for u in cut_units(model.spec.backbone, "stem") if u in units]
    else:
        chosen = [u for u in units if u == group or u.startswith(group + ".")]
    if not chosen:
        stages = sorted({u.rsplit(".", 1)[0] for u in units if "." in u})
        raise ConfigError(f"--tune {group} names no unit of the kept trunk; give stem, a stage ({', '.join(stages)}) "
                          f"or one unit ({', '.join(units)}).")
    return chosen


@lru_cache(maxsize=64)
def cut_units(backbone: str, cut: str) -> tuple[str, ...]:
    """The unit paths a cut of ``backbone`` keeps (building the backbone once per name, not once per epoch)."""
    return find_cut(backbone_cuts(get_spec(backbone).create()), cut).units
