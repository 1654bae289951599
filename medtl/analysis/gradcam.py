"""Grad-CAM (Selvaraju et al. 2017) for medtl classifiers: where in the image does a model's evidence for a class lie?

By default the maps are taken at the model's cut (the last kept unit), the deepest features TruncatedTL keeps, so
a truncated, a fully fine-tuned, a layer-wise fine-tuned and a TransFusion model are each explained at their own
top (the paper's side-by-side figure). Nothing here assumes two spatial dimensions: the gradients are averaged
over every spatial dimension and the map is upsampled with the interpolation of its rank, so 3D models reuse it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..artifacts import load_model
from ..config import TrainConfig
from ..data import Preprocess
from ..errors import ConfigError, DataError, MedtlWarning
from ..model import Classifier
from ..plotting import pyplot
from ..resolve import load_data
from ..rundir import RunDir
from ..strategies import label_of

FIGURE = "gradcam.png"
ARRAYS = "gradcam.npz"
MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}  # F.interpolate's smooth mode for 1, 2 and 3 spatial dims
TARGETS = ("label", "pred")


def gradcam(model: Classifier, x: torch.Tensor, target: torch.Tensor | None = None,
            layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps of ``model`` for the classes ``target`` (one per image; default: the predicted class).

    Args:
        x: a preprocessed batch ``(N, C, *spatial)``.
        layer: a module of the trunk (``blocks.3``, ``layer3.1.conv2``); default: the last kept unit (the cut).

    Returns ``(maps, probabilities)``: maps ``(N, *spatial)`` of the input's size, each scaled to [0, 1] by its
    maximum (all zeros where no location has positive evidence), and the softmax (sigmoid for multi-label)
    probabilities ``(N, classes)``.
    """
    module = _layer(model, layer)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            # An input that requires grad makes every activation differentiable, frozen parameters or not.
            logits = model(x.detach().clone().requires_grad_(True))
            if target is None:
                target = logits.argmax(1)
            chosen = logits.gather(1, target.view(-1, 1).to(logits.device)).sum()
            (grads,) = torch.autograd.grad(chosen, captured[-1])
    finally:
        handle.remove()
        model.train(was_training)
    features = captured[-1].detach()
    spatial = tuple(range(2, features.ndim))
    if not spatial:
        raise ConfigError(f"layer {layer!r} has no spatial dimensions (output shape {tuple(features.shape)}); pick a "
                          "convolutional layer of the trunk.")
    weights = grads.mean(spatial, keepdim=True)  # one weight per channel: its gradient averaged over space
    cam = F.relu((weights * features).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode=MODES[len(spatial)], align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(1).view(-1, *[1] * len(spatial))
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
    probs = logits.detach().sigmoid() if model.spec.task == "multilabel" else logits.detach().softmax(1)
    return cam, probs


def _layer(model: Classifier, name: str | None) -> nn.Module:
    name = name or model.spec.units[-1]
    try:
        return model.trunk.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"--layer {name!r} is not a module of this model's trunk; use one of its kept units: "
                          f"{', '.join(model.spec.units)} (or a submodule of one, e.g. {model.spec.units[-1]}.0).") \
            from None


@dataclass
class Explanation:
    """Grad-CAM maps of several runs on the same images: ``maps[r, i]`` is run ``r``'s map of image ``i``."""

    runs: list[str]
    titles: list[str]
    indices: np.ndarray
    labels: np.ndarray
    images: list[np.ndarray]  # per run: (N, H, W) or (N, H, W, 3) in [0, 1] at that run's input size
    maps: list[np.ndarray]  # per run: (N, H, W)
    probs: np.ndarray  # (runs, N): each run's probability of the explained class
    targets: np.ndarray  # (runs, N): the explained class
    classes: list[str]
    split: str
    layer: str | None = None  # None: each model's cut


def explain(runs: list[str | Path], *, images: int = 4, split: str = "test", layer: str | None = None,
            target: str = "label", seed: int = 0) -> Explanation:
    """Grad-CAM maps of every run in ``runs`` on the same ``images`` images of ``split`` of the data the first
    run was trained on (a seeded random subset, half of each class where it can). Each model sees the images
    exactly as its evaluation did (its own size and normalisation, no augmentation). ``target``: explain the true
    class (``label``) or each model's predicted class (``pred``)."""
    if not runs:
        raise ConfigError("give at least one run directory.")
    if target not in TARGETS:
        raise ConfigError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}.")
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}.")
    paths = [Path(r) for r in runs]
    configs = [_config(p) for p in paths]
    if len({(c.data, c.data_root, c.resplit) for c in configs}) > 1:
        raise ConfigError("the runs were trained on different data: "
                          + "; ".join(f"{p.name}: {c.data}" for p, c in zip(paths, configs)))
    data = load_data(configs[0])
    if data.task == "multilabel" and target == "label":
        raise DataError("multi-label runs have no single true class to explain; use --target pred.")
    chosen = data.split(split)
    if images > len(chosen):
        warnings.warn(f"--images {images}: the {split} split of {data.name} has {len(chosen)} images; explaining all "
                      f"{len(chosen)}.", MedtlWarning, stacklevel=2)
    pick = _pick(chosen.labels, images, seed)
    raw = chosen.float_images(pick)
    labels = chosen.labels[pick]
    out_images, out_maps, probs, targets, titles = [], [], [], [], []
    for path, config in zip(paths, configs):
        model = load_model(path)
        spec = model.spec
        if spec.classes and data.classes != spec.classes:
            raise DataError(f"{path.name} was trained on classes {spec.classes}, the data has {data.classes}.")
        x = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)(raw)
        cam, p = gradcam(model, x, labels if target == "label" else None, layer)
        chosen_class = labels if target == "label" else p.argmax(1)
        out_maps.append(cam.numpy())
        shown = F.interpolate(raw, size=x.shape[2:], mode=MODES[x.ndim - 2], align_corners=False).clamp(0, 1)
        out_images.append(shown[:, 0].numpy() if shown.shape[1] == 1 else shown.movedim(1, -1).numpy())
        probs.append(p.gather(1, chosen_class.view(-1, 1))[:, 0].numpy())
        targets.append(chosen_class.numpy())
        titles.append(_title(config, spec))
    return Explanation([str(p) for p in paths], titles, pick.numpy(), labels.numpy(), out_images, out_maps,
                       np.stack(probs), np.stack(targets), list(data.classes), split, layer)


def _config(run: Path) -> TrainConfig:
    if not RunDir(run).started:
        raise ConfigError(f"{run} is not a medtl run directory (no {RunDir.CONFIG}), so its data is unknown.")
    return RunDir(run).load_config()


def _pick(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` indices, seeded, taking the classes in turn so that every class appears when ``k`` allows."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    if labels.ndim != 1:
        return order[:k].sort().values
    queues = [order[labels[order] == c].tolist() for c in labels.unique().tolist()]
    picked: list[int] = []
    while len(picked) < min(k, len(labels)):
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return torch.tensor(picked)


def _title(config: TrainConfig, spec) -> str:
    """The paper's short name of the run's strategy with its point on the cut axis (TTL's cut, LWFT's last frozen
    layer, TF's last pretrained one), as the paper labels its columns."""

    name = label_of(config.strategy)
    if spec.volume:  # the 2D-to-3D conversion tells two volume models of one strategy apart
        name = f"{name} {spec.volume}"
    if config.strategy == "lwft" and config.freeze_to:
        return f"{name} (frozen to {config.freeze_to})"
    if config.strategy == "transfusion" and config.slim_from:
        return f"{name} (slim after {config.slim_from})"
    return name if config.strategy == "full" else f"{name} ({spec.cut})"


def write_explanation(result: Explanation, out: str | Path) -> tuple[Path, Path]:
    """``gradcam.png`` (one column per run, one row per image: the map over the image) and ``gradcam.npz`` (the
    maps, images, indices, labels, classes and probabilities, to redraw or measure them)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"maps_{i}": m for i, m in enumerate(result.maps)} | {
        f"images_{i}": im for i, im in enumerate(result.images)}
    np.savez_compressed(out / ARRAYS, runs=np.array(result.runs), titles=np.array(result.titles),
                        indices=result.indices, labels=result.labels, probs=result.probs, targets=result.targets,
                        classes=np.array(result.classes), split=np.array(result.split), **arrays)
    plot_explanation(result, out / FIGURE)
    return out / FIGURE, out / ARRAYS


def plot_explanation(result: Explanation, path: Path) -> None:
    """One column per run, one row per image. A volume is drawn as its maximum-intensity projections along depth,
    height and width side by side, the map's maximum projections over them: a plane through one point would miss
    small structures that the coarse map at a deep cut cannot point to exactly."""
    plt = pyplot("the Grad-CAM figure")
    volume = result.maps[0].ndim == 4  # (images, D, H, W)
    rows, cols = len(result.indices), len(result.runs) + 1
    width = 3 * 1.9 if volume else 1.9
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 1.9 * rows + 0.5), squeeze=False)
    for i in range(rows):
        axes[i, 0].imshow(_planes(result.images[0][i], volume), cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(f"#{result.indices[i]}\n{_class_name(result, result.labels[i])}", fontsize=8)
        for r in range(len(result.runs)):
            ax = axes[i, r + 1]
            ax.imshow(_planes(result.images[r][i], volume), cmap="gray", vmin=0, vmax=1)
            ax.imshow(_planes(result.maps[r][i], volume), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if not result.maps[r][i].any():  # say so, rather than leave a uniform colour to be misread
                ax.text(0.5, 0.5, "no positive\nevidence", transform=ax.transAxes, ha="center", va="center",
                        fontsize=8, color="white")
            ax.set_xlabel(f"p({_class_name(result, result.targets[r, i])}) = {result.probs[r, i]:.2f}", fontsize=7,
                          labelpad=2)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c, title in enumerate(["image", *result.titles]):
        axes[0, c].set_title(title, fontsize=9)
    where = f"at {result.layer}" if result.layer else "at each model's cut"
    planes = ("; volumes: maximum projections along depth | height | width" if volume else "")
    fig.suptitle(f"Grad-CAM {where}, {result.split} images{planes}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _planes(array: np.ndarray, volume: bool) -> np.ndarray:
    """A 2D image as it is; a volume ``(D, H, W)`` as its maximum projections along depth, height and width side by
    side (volumes are cubes here: resized to the model's size), one blank column between them."""
    if not volume:
        return array
    gap = np.full((array.shape[1], 1), np.nan, dtype=np.float32)
    return np.concatenate([array.max(0), gap, array.max(1), gap, array.max(2)], axis=1)


def _class_name(result: Explanation, index) -> str:
    index = int(index)
    return result.classes[index] if index < len(result.classes) else str(index)
