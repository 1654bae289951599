"""Batched resizing and augmentation of volumes ``(B, C, D, H, W)``: every volume of the batch gets its own random
crop (a cube of a random fraction of the volume, anywhere inside it) and random flips along the chosen axes, all
sampled with one 3D ``grid_sample`` call, as :class:`medtl.data.augment.Preprocess` does for images."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

AXES = "dhw"  # depth, height, width: the letters of --flip-axes


def parse_axes(text: str) -> tuple[int, ...]:
    """``"dhw"`` -> the tensor axes ``(2, 3, 4)`` of a volume batch; ``"none"`` or ``""``: no flips."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    if any(c not in AXES for c in text) or len(set(text)) != len(text):
        raise ConfigError(f"flip_axes {text!r} must be letters of {AXES!r} (depth, height, width), each at most once, "
                          "or none.")
    return tuple(2 + AXES.index(c) for c in text)


def resize_volumes(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, D, H, W)`` to ``(B, C, size, size, size)``: area averaging when every axis shrinks, else trilinear."""
    if x.shape[2:] == (size,) * 3:
        return x
    if all(n >= size for n in x.shape[2:]):
        return F.interpolate(x, size=(size,) * 3, mode="area")
    return F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)


def crop_volumes(x: torch.Tensor, size: int, scale: tuple[float, float], flip_axes: tuple[int, ...],
                 generator: torch.Generator | None) -> torch.Tensor:
    """A random cube of each volume, ``scale`` = the (min, max) fraction of the volume it covers, resized to ``size``
    and flipped with probability 0.5 along each of ``flip_axes`` (tensor axes 2, 3, 4)."""
    b, c = x.shape[:2]
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(b, 7, generator=generator, device=device, dtype=torch.float64)
    side = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) ** (1 / 3)  # the cube's side, as a fraction of each axis
    theta = torch.zeros(b, 3, 4, dtype=torch.float64, device=device)
    for row, axis in enumerate((4, 3, 2)):  # affine_grid's rows are x (width), y (height), z (depth)
        flip = u[:, 4 + row] < 0.5 if axis in flip_axes else torch.zeros(b, dtype=torch.bool, device=device)
        theta[:, row, row] = torch.where(flip, -side, side)
        theta[:, row, 3] = (1 - side) * (2 * u[:, 1 + row] - 1)  # the centre, anywhere the cube fits
    x = resize_volumes(x, size) if min(x.shape[2:]) > size else x  # shrink first (averaged): no aliasing
    grid = F.affine_grid(theta.to(x.device, x.dtype), [b, c, size, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
