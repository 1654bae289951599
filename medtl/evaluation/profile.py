"""Model cost: parameter counts, multiply-accumulates (ptflops' convention, as in the paper) and latency."""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from ..backbones.volume import VolumeConv, volume_conv_macs


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def task_bytes(model: nn.Module) -> int:
    """Bytes a task stores beyond the shared pretrained weights, in their stored dtype: every parameter that trains and
    the buffers of every module in training mode (BatchNorm statistics that follow the data). Call it with the model
    set up for training (``Strategy.train_mode``), before any adapter is merged: for a parameter-efficient method it
    is the adapter plus the head, for full fine-tuning or a truncated network every kept tensor."""
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for m in model.modules() if m.training
                  for b in m.buffers(recurse=False))
    return params + buffers


def count_macs(model: nn.Module, in_chans: int, image_size: int, dims: int = 2) -> int:
    """Multiply-accumulates of one forward pass at ``image_size`` (conv, BN, activations, pooling, linear), on an
    image, or on a ``image_size``-cubed volume with ``dims=3``.

    Uses ptflops' module hooks, as the TruncatedTL paper did; timm's subclassed layers (``Conv2dSame``,
    ``BatchNormAct2d``) and medtl's 3D convolutions are registered explicitly so they are not skipped.
    """
    from ptflops import get_model_complexity_info
    from ptflops.pytorch_ops import bn_flops_counter_hook, conv_flops_counter_hook

    hooks = {VolumeConv: volume_conv_macs}
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and type(module) is not nn.Conv2d:
            hooks[type(module)] = conv_flops_counter_hook
        elif isinstance(module, nn.BatchNorm2d) and type(module) is not nn.BatchNorm2d:
            hooks[type(module)] = bn_flops_counter_hook
    was_training = model.training
    model.eval()
    try:
        macs, _ = get_model_complexity_info(
            model, (in_chans, *[image_size] * dims), as_strings=False, print_per_layer_stat=False,
            custom_modules_hooks=hooks, backend="pytorch",
        )
    finally:
        model.train(was_training)
    return int(macs)


@torch.inference_mode()
def latency_ms(model: nn.Module, in_chans: int, image_size: int, batch_size: int = 1, warmup: int = 5,
               repeats: int = 20, dims: int = 2) -> float:
    """Median wall time of one forward pass (ms) after warm-up, in eval mode without autograd (``dims=3``: of a
    volume)."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, in_chans, *[image_size] * dims)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    return statistics.median(times)
