"""2D networks made 3D: a built 2D trunk converted in place so that it takes volumes ``(B, C, D, H, W)``.

Every module keeps its name, so cut names, strategies, state-dict keys and the analyses are those of 2D. Three
conversions of the ImageNet kernels (Yang et al., "Reinventing 2D convolutions for 3D images", 2021, name them):

- ``acs``: each kernel stays 2D; the output channels are split in three and each third convolves one view (axial
  ``(1, k, k)``, coronal ``(k, 1, k)``, sagittal ``(k, k, 1)``). The parameters are exactly the 2D ones.
- ``i3d``: each kernel is repeated ``k`` times along depth and divided by ``k`` (Carreira & Zisserman 2017). The depth
  is padded by repeating the edge slice, so a volume that is constant along depth gives exactly the 2D network's
  response on every slice (zero padding would dim the first and last slices).
- ``2.5d``: each kernel gets depth 1 ``(1, k, k)``: slices are convolved separately (pooling and strides still mix
  them). The parameters are exactly the 2D ones.

Strides apply along depth as along height, so the three conversions give feature maps of the same shape.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from timm.models._efficientnet_blocks import SqueezeExcite
from torch import nn

from ..config import VOLUME_MODES
from ..errors import ConfigError
from .cuts import Trunk
from .registry import backbone_cuts

#: the kernel shape of each ACS view, given the 2D kernel ``(kh, kw)``
ACS_VIEWS = (lambda kh, kw: (1, kh, kw), lambda kh, kw: (kh, 1, kw), lambda kh, kw: (kh, kw, 1))


class VolumeConv(nn.Module):
    """A 2D convolution applied to volumes (see the module docstring for ``mode``). ``weight`` keeps the 2D shape
    for ``acs`` and ``2.5d`` and is 5D for ``i3d``; padding follows the 2D layer's (static, or timm's TF "same")."""

    #: run grouped (depthwise) kernels on channels_last_3d inputs: on CPU the default layout takes a per-group
    #: backward several times slower (``benchmarks/volume_conv.py``); outputs return to the default layout, in which
    #: BatchNorm is faster
    grouped_channels_last = True

    def __init__(self, conv: nn.Conv2d, mode: str):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str) and conv.padding != "same":
            raise ConfigError(f"medtl cannot convert a convolution with padding {conv.padding!r} "
                              f"({conv.padding_mode}) to 3D.")
        self.mode = mode
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = (conv.stride[0], *conv.stride)
        self.dilation = (conv.dilation[0], *conv.dilation)
        self.same = isinstance(conv, Conv2dSame) or conv.padding == "same"  # TF "same": padded from the input size
        self.padding = (0, 0) if self.same else tuple(conv.padding)
        weight = conv.weight.detach()
        if mode == "i3d":
            depth = self.kernel_size[0]
            weight = weight.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
        self.weight = nn.Parameter(weight.clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def views(self) -> list[tuple[slice, slice, int, tuple[int, int, int], torch.Tensor]]:
        """``(output channels, input channels, groups, 3D kernel shape, 3D weight)`` of each convolution run."""
        kh, kw = self.kernel_size
        whole = slice(None)
        kernel = self.weight  # read once: a parametrized weight (lora) is computed on every read
        if self.mode == "i3d":
            return [(whole, whole, self.groups, tuple(kernel.shape[2:]), kernel)]
        if self.mode == "2.5d" or kh == kw == 1:  # a 1x1 kernel sees the same in every view: one convolution
            return [(whole, whole, self.groups, (1, kh, kw), kernel.unsqueeze(2))]
        runs = []
        g, out_per, in_per = self.groups, self.out_channels // self.groups, self.in_channels // self.groups
        bounds = [round(g * i / 3) for i in range(4)] if g > 1 else [round(self.out_channels * i / 3) for i in range(4)]
        for view, lo, hi in zip(ACS_VIEWS, bounds, bounds[1:]):
            if lo == hi:
                continue
            shape = view(kh, kw)
            if g > 1:  # split whole groups (depthwise: channels) across the views
                out, inp, groups = slice(lo * out_per, hi * out_per), slice(lo * in_per, hi * in_per), hi - lo
            else:
                out, inp, groups = slice(lo, hi), whole, 1
            weight = kernel[out]
            runs.append((out, inp, groups, shape, weight.reshape(*weight.shape[:2], *shape)))
        return runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for out, inp, groups, shape, weight in self.views():
            xi = x if inp == slice(None) else x[:, inp]
            bias = None if self.bias is None else self.bias[out]
            xi, padding = self._pad(xi, shape)
            if groups > 1 and self.grouped_channels_last:
                xi = xi.contiguous(memory_format=torch.channels_last_3d)
            outs.append(F.conv3d(xi, weight, bias, self.stride, padding, self.dilation, groups).contiguous())
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    def _pad(self, x: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """The input padded as the 2D layer pads (depth: as height), and the padding left to ``conv3d``."""
        if self.same:
            pads = []
            for size, k, s, d in zip(x.shape[2:], shape, self.stride, self.dilation):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads.append((total // 2, total - total // 2))
        else:
            ph, pw = self.padding
            pads = [(p, p) if k > 1 else (0, 0) for p, k in zip((ph, ph, pw), shape)]
        (d0, d1), (h0, h1), (w0, w1) = pads
        if self.mode == "i3d" and d0 + d1:
            x = F.pad(x, (0, 0, 0, 0, d0, d1), mode="replicate")
            d0 = d1 = 0
        if d0 == d1 and h0 == h1 and w0 == w1:
            return x, (d0, h0, w0)
        return F.pad(x, (w0, w1, h0, h1, d0, d1)), (0, 0, 0)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, mode={self.mode}, "
                f"stride={self.stride}, groups={self.groups}{', same' if self.same else ''}")


class _DepthFolded:
    """A 2D normalisation run on volumes with depth folded into height (a view; the statistics are per channel over
    batch and space, as a 3D BatchNorm's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, d, h, w = x.shape
        return super().forward(x.reshape(b, c, d * h, w)).reshape(b, c, d, h, w)


class VolumeSqueezeExcite(SqueezeExcite):
    """timm's squeeze-excite, averaging over every spatial axis (timm's averages over two)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = self.conv_expand(self.act1(self.conv_reduce(x.mean(tuple(range(2, x.ndim)), keepdim=True))))
        return x * self.gate(x_se)


_FOLDED: dict[type, type] = {}


def _folded(cls: type) -> type:
    if cls not in _FOLDED:
        _FOLDED[cls] = type(f"{cls.__name__}Volume", (_DepthFolded, cls), {})
    return _FOLDED[cls]


def _replacement(module: nn.Module, mode: str) -> nn.Module | None:
    """The 3D module for a 2D one (None: usable as it is, or converted by changing its class in place)."""
    if isinstance(module, nn.Conv2d):
        return VolumeConv(module, mode)
    if type(module) is nn.BatchNorm2d:
        module.__class__ = nn.BatchNorm3d
    elif isinstance(module, nn.BatchNorm2d):  # timm's BatchNormAct2d: norm + activation, 4D only
        module.__class__ = _folded(type(module))
    elif type(module) is SqueezeExcite:
        module.__class__ = VolumeSqueezeExcite
    elif isinstance(module, nn.MaxPool2d):
        return nn.MaxPool3d(module.kernel_size, module.stride, module.padding, module.dilation,
                            ceil_mode=module.ceil_mode)
    elif isinstance(module, nn.AvgPool2d):
        return nn.AvgPool3d(module.kernel_size, module.stride, module.padding, module.ceil_mode,
                            module.count_include_pad, module.divisor_override)
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        return nn.AdaptiveAvgPool3d(size if isinstance(size, int) or size is None else (size[0], *size))
    return None


def to_volume(model: nn.Module, mode: str) -> nn.Module:
    """Convert ``model`` (2D, weights loaded) in place to a 3D network of the same module names; returns it.

    Raises ConfigError for ``mode`` unknown, or for a layer medtl does not know how to convert (named, rather than
    left 2D to fail on the first volume or, worse, to broadcast silently)."""
    if mode not in VOLUME_MODES:
        raise ConfigError(f"unknown volume conversion {mode!r}; choose one of {', '.join(VOLUME_MODES)}.")
    for path, module in list(model.named_modules()):
        new = _replacement(module, mode)
        if new is not None:
            parent, _, leaf = path.rpartition(".")
            new.train(module.training)
            setattr(model.get_submodule(parent) if parent else model, leaf, new)
    left = [f"{path} ({type(m).__name__})" for path, m in model.named_modules() if type(m).__name__.endswith("2d")]
    if left:
        raise ConfigError(f"medtl cannot convert these layers to 3D: {', '.join(left[:5])}; volumes work with the "
                          "ResNet, DenseNet and EfficientNet backbones of `medtl backbones`.")
    return model


def volume_conv_macs(module: VolumeConv, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
    """ptflops hook: multiply-accumulates of a :class:`VolumeConv` (each run: its output voxels x kernel volume x input
    channels per group), plus one per output for the bias."""
    spatial = math.prod(output.shape[2:]) * output.shape[0]
    macs = sum(w.shape[0] * spatial * math.prod(w.shape[1:]) for *_, w in module.views())
    module.__flops__ += int(macs + (output.numel() if module.bias is not None else 0))


def volume_backbone(model: nn.Module, mode: str) -> nn.Module:
    """A whole 2D backbone's feature extractor (every unit up to its last cut, under the backbone's paths) converted to
    3D: what the analyses walk cut by cut on volumes."""
    return to_volume(Trunk(model, backbone_cuts(model)[-1]), mode)
