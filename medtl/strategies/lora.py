"""LoRA for convolutions (Hu et al., ICLR 2022; as the ``peft`` library applies it to Conv2d/Conv3d): each dense
convolution of the frozen network gets a low-rank update, a ``rank``-channel convolution with the kernel's size and
stride followed by a 1x1 convolution back to the output channels, plus the head. ``merge_and_unload`` folds the updates
into the kernels for export, so the saved model is the pretrained architecture.

peft adapts plain ``nn.Conv2d``/``nn.Conv3d`` with ``groups=1`` and cannot merge grouped ones, so depthwise
convolutions are left as they are (in EfficientNet they hold about 4% of the weights), and so are timm's
``Conv2dSame`` layers, whose TF-style padding the update's convolution would not reproduce (EfficientNet-Lite's
stem); the volume convolutions medtl makes for 3D data are its own modules, so LoRA is for 2D models."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..errors import ConfigError
from ..model import Classifier
from ..optional import require
from .base import Adapter, Strategy

TUNER = "_lora_tuner"  # where the peft tuner is kept on the classifier (outside its modules: it wraps the trunk)


def lora(cut: str | None = None, lora_rank: int = 8) -> Strategy:
    """LoRA for convolutions (Hu et al., ICLR 2022, through peft): a rank-r update of every dense convolution of the
    frozen network, plus the head; merged into the kernels for export; with --cut, on the truncated network."""
    if int(lora_rank) != lora_rank or lora_rank < 1:
        raise ConfigError(f"--lora-rank must be a whole number of at least 1, got {lora_rank}.")
    return Strategy("lora", cut=cut, adapter="lora", lora_rank=int(lora_rank))


def _peft():
    return require("peft", extra="peft", purpose="the lora strategy")


def targets(trunk: nn.Module) -> list[str]:
    """The convolutions LoRA adapts: plain Conv2d/Conv3d with groups=1."""
    return [name for name, m in trunk.named_modules() if type(m) in (nn.Conv2d, nn.Conv3d) and m.groups == 1]


class LoRA(Adapter):
    def attach(self, model: Classifier, strategy: Strategy) -> None:
        peft = _peft()
        names = targets(model.trunk)
        if model.spec.volume is not None or not names:
            raise ConfigError("lora adapts plain 2D/3D convolutions (through peft); this trunk has none it can adapt "
                              f"({'a volume model' if model.spec.volume else 'no dense convolution'}); use ssf or "
                              "bitfit.")
        config = peft.LoraConfig(r=strategy.lora_rank, lora_alpha=strategy.lora_rank, target_modules=names,
                                 lora_dropout=0.0)
        tuner = peft.LoraModel(model.trunk, config, "default")  # injects the LoRA layers into the trunk, in place
        model.__dict__[TUNER] = tuner  # not a submodule: its model is the trunk itself

    def trainable(self, model: Classifier) -> Iterable[nn.Parameter]:
        return (p for n, p in model.trunk.named_parameters() if ".lora_" in n)

    def merge(self, model: Classifier) -> Classifier:
        tuner = model.__dict__.pop(TUNER)
        tuner.merge_and_unload()  # replaces every LoRA layer of the trunk by its base layer, update folded in
        return model
