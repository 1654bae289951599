"""Batched preprocessing on the batch's device: resize or random resized crop + flip, then normalisation.

Working on whole batches of tensors (one ``grid_sample`` call for all crops) keeps augmentation off the critical path
that per-image PIL transforms would put it on.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .volume_augment import crop_volumes, resize_volumes

TRIES = 10  # crop proposals per image, as in torchvision's RandomResizedCrop


class Preprocess:
    """Turn a batch ``(B, C, H, W)`` (uint8, or float in [0, 1]) into normalised float32 ``(B, C, S, S)``.

    Without ``augment`` the batch is resized (bilinear, antialiased when shrinking). With ``augment`` every image
    gets its own random crop, whose area fraction lies in ``scale`` and aspect ratio (width / height) in ``ratio``,
    resized to ``S`` and flipped horizontally with probability 0.5 if ``hflip``. Random numbers come from
    ``generator`` (CPU or the batch's device), so a seeded generator repeats the same crops.

    A 1-channel batch with 3-entry ``mean``/``std`` is normalised with their averages: grey images meet RGB weights
    whose first convolution was summed over its input channels.

    Volumes ``(B, C, D, H, W)`` become ``(B, C, S, S, S)`` the same way (:mod:`medtl.data.volume_augment`): a random
    cube of a ``scale`` fraction of the volume, flipped along ``flip_axes`` (tensor axes 2, 3, 4).
    """

    def __init__(
        self,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: bool = False,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        flip_axes: tuple[int, ...] = (4,),
    ) -> None:
        if image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {image_size}")
        if not mean or len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConfigError(f"mean and std need the same number of entries and std > 0, got {mean} and {std}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        self.image_size = image_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment
        self.scale = scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.hflip = hflip
        self.flip_axes = flip_axes

    def resized(self, image_size: int) -> Preprocess:
        """The same preprocessing at another output size (progressive resizing); ``self`` when unchanged."""
        if image_size == self.image_size:
            return self
        other = copy.copy(self)
        other.image_size = image_size
        return other

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.ndim not in (4, 5):
            raise ValueError(f"expected a batch (B, C, H, W) or (B, C, D, H, W), got shape {tuple(images.shape)}")
        x = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        if x.ndim == 5:
            x = (crop_volumes(x, self.image_size, self.scale, self.flip_axes, generator) if self.augment
                 else resize_volumes(x, self.image_size))
        else:
            x = self._crop(x, generator) if self.augment else self._resize(x, self.image_size, self.image_size)
        mean, std = self._stats(x.shape[1], x.device)
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        return (x - mean.view(shape)) / std.view(shape)

    @staticmethod
    def _resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if x.shape[-2:] == (h, w):
            return x
        shrink = x.shape[-2] > h or x.shape[-1] > w
        return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)

    def _crop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random resized crop + flip for the whole batch with one ``affine_grid`` / ``grid_sample``."""
        b, c, h, w = x.shape
        s = self.image_size
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(b, 2 * TRIES + 3, generator=generator, device=device, dtype=torch.float64)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, :TRIES]
        aspect = torch.exp(self.log_ratio[0] + (self.log_ratio[1] - self.log_ratio[0]) * u[:, TRIES : 2 * TRIES])
        # Crop width and height as fractions of the image's, for a crop of `area` * H * W pixels.
        fw = torch.sqrt(area * aspect * h / w)
        fh = torch.sqrt(area / aspect * w / h)
        first = ((fw <= 1) & (fh <= 1)).to(torch.uint8).argmax(1, keepdim=True)  # first fitting try (else try 0)
        fw = fw.gather(1, first).squeeze(1).clamp(max=1)
        fh = fh.gather(1, first).squeeze(1).clamp(max=1)
        cx = fw / 2 + (1 - fw) * u[:, -3]  # crop centre in [0, 1]
        cy = fh / 2 + (1 - fh) * u[:, -2]
        flip = (u[:, -1] < 0.5) if self.hflip else torch.zeros(b, dtype=torch.bool, device=device)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=device)
        theta[:, 0, 0] = torch.where(flip, -fw, fw)
        theta[:, 0, 2] = 2 * cx - 1
        theta[:, 1, 1] = fh
        theta[:, 1, 2] = 2 * cy - 1
        # Shrink large inputs first (antialiased) so that sampling the crops never aliases.
        x = self._resize(x, min(h, s), min(w, s))
        grid = F.affine_grid(theta.to(x.device, x.dtype), [b, c, s, s], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _stats(self, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.mean) == channels:
            mean, std = self.mean, self.std
        elif channels == 1:
            mean, std = (sum(self.mean) / len(self.mean),), (sum(self.std) / len(self.std),)
        elif len(self.mean) == 1:
            mean, std = self.mean * channels, self.std * channels
        else:
            raise ConfigError(f"mean/std have {len(self.mean)} entries but the images have {channels} channels")
        shape = (1, channels, 1, 1)
        return torch.tensor(mean, device=device).view(shape), torch.tensor(std, device=device).view(shape)
