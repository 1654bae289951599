"""A finished medtl run as the pretrained source of a new run (``--weights RUN_DIR``): the paper's medical-source
experiments (a model fine-tuned on chest X-rays, then transferred to another target).

The source run's trunk weights (BatchNorm statistics included) go into the same backbone, which is truncated at the
new cut as ImageNet weights are. Layers the source run discarded have no weights to give, so a new cut deeper than
the source's is refused: medtl never fills pretrained layers with random ones. The new run records the source's path
and the SHA-256 of its ``model.safetensors`` (``weights_source`` in ``metrics.json``, and the model card).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .artifacts import MODEL_SPEC, MODEL_WEIGHTS, weights_sha256
from .backbones import Trunk, backbone_cuts, create_backbone, family_of, find_cut, get_spec
from .errors import ConfigError
from .model import Classifier, ModelSpec
from .rundir import RunDir

TRUNK = "trunk."


def is_run_dir(weights) -> bool:
    """``--weights`` names a directory (a run, or a mistake :func:`read_source` explains)."""
    return isinstance(weights, (str, Path)) and str(weights) not in ("imagenet", "none", "random") and \
        Path(weights).expanduser().is_dir()


@dataclass(frozen=True)
class SourceRun:
    """The trunk of a finished run: ``state`` under the backbone's own module names."""

    path: Path
    spec: ModelSpec
    state: dict[str, torch.Tensor]
    sha256: str
    data: str | None

    def provenance(self) -> dict:
        return {"run": str(self.path), "sha256": self.sha256, "backbone": self.spec.backbone, "cut": self.spec.cut,
                "image_size": self.spec.image_size, "data": self.data}

    def load_into(self, model: Classifier, pretrained_cut: str) -> None:
        """Give ``model``'s trunk, up to ``pretrained_cut`` (its own cut; TransFusion: its slim point), the source's
        weights; a grey source's first convolution is spread over colour input and a colour one summed for grey."""
        reference, _ = create_backbone(self.spec.backbone, None, model.spec.in_chans)
        cut = find_cut(backbone_cuts(reference), pretrained_cut)
        first_conv = family_of(reference).first_conv(reference) + ".weight"
        needed = Trunk(reference, cut).state_dict()
        missing = [k for k in needed if k not in self.state]
        if missing:
            raise ConfigError(f"the new model keeps pretrained layers up to {pretrained_cut!r}, deeper than the source "
                              f"run {self.path} kept (it was cut at {self.spec.cut!r}): {len(missing)} tensors, e.g. "
                              f"{missing[0]}, have no source weights. Choose --cut (or the strategy's cut) at or "
                              f"before {self.spec.cut!r}; `medtl cuts --backbone {self.spec.backbone}` lists them in "
                              "order.")
        state = {}
        for key, own in needed.items():
            value = self.state[key]
            if key == first_conv and value.shape[1] != own.shape[1]:
                value = _adapt_channels(value, own.shape[1], self.path)
            if value.shape != own.shape:
                raise ConfigError(f"{self.path}: {key} has shape {tuple(value.shape)}, the new model needs "
                                  f"{tuple(own.shape)}; the source run was built differently (another --slim-from?).")
            state[key] = value
        unexpected = model.trunk.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:  # not reached: the reference trunk has the model's names
            raise ConfigError(f"source weights {unexpected[:3]} do not belong to this model.")


def _adapt_channels(weight: torch.Tensor, channels: int, source: Path) -> torch.Tensor:
    """The first convolution for another input channel count, as ImageNet weights are adapted: summed over colour
    channels for grey input; a grey kernel shared equally among colour channels (a grey image replicated gives the
    source's response)."""
    if channels == 1:
        return weight.sum(1, keepdim=True)
    if weight.shape[1] == 1:
        return weight.repeat(1, channels, 1, 1) / channels
    raise ConfigError(f"{source} was trained on {weight.shape[1]}-channel images, the new data has {channels}; "
                      "medtl adapts grey to colour and colour to grey only.")


def read_source(path: str | Path, backbone: str) -> SourceRun:
    """The finished run at ``path`` as a source for ``backbone`` (which must be the run's own backbone)."""
    path = Path(path).expanduser().resolve()
    for name in (MODEL_SPEC, MODEL_WEIGHTS):
        if not (path / name).is_file():
            raise ConfigError(f"--weights {path} is a directory but not a finished medtl run ({name} is missing); "
                              "give a run directory, a weights file, imagenet or none.")
    from safetensors.torch import load_file

    spec = ModelSpec.from_dict(json.loads((path / MODEL_SPEC).read_text(encoding="utf-8")), str(path / MODEL_SPEC))
    if spec.backbone != backbone:
        # a name read from a file is advice only once medtl knows it (never --backbone timm:hf-hub:someone/model)
        advice = (f"Train on the same backbone (--backbone {spec.backbone}) to start from its weights."
                  if _known_backbone(spec.backbone) else "medtl does not know that backbone, so the run cannot be a "
                  "source of weights.")
        raise ConfigError(f"the source run {path} is a {spec.backbone!r}; this run's --backbone is {backbone}. "
                          f"{advice}")
    state = {k[len(TRUNK):]: v for k, v in load_file(str(path / MODEL_WEIGHTS)).items() if k.startswith(TRUNK)}
    metrics = path / RunDir.METRICS
    data = json.loads(metrics.read_text(encoding="utf-8")).get("data") if metrics.is_file() else None
    return SourceRun(path, spec, state, weights_sha256(path), data)


def _known_backbone(name: str) -> bool:
    try:
        get_spec(name)
    except ConfigError:
        return False
    return True
