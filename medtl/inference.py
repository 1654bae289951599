"""Inference: a model's class probabilities for a batch of images, the one way training's validation, a run's test
scores, ``evaluate``, ``predict``, ``export`` and ensembles compute them.

It sits below both :mod:`medtl.training` and :mod:`medtl.deploy` (see the layer contract in tests/test_imports.py),
so that scoring a saved model never imports the training loop."""
from __future__ import annotations

import numpy as np
import torch

from .data import Preprocess
from .model import Classifier

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
EVAL_PIXELS = 256 * 64 * 64  # pixels per evaluation batch (see eval_batch_size)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for forward passes and the loss (backward follows the forward's dtypes); fp32: off."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; host-to-GPU copies go through pinned memory without blocking the host."""
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def eval_batch_size(image_size: int) -> int:
    """Images per evaluation batch: 256 at 64 px, and the same number of pixels at other sizes (20 at 224 px), so
    the peak memory of evaluation does not grow with the image size (at 224 px, one expanded feature map of 256
    images is 1.8 GB)."""
    return max(1, min(1024, EVAL_PIXELS // image_size ** 2))


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


@torch.inference_mode()
def predict(model: Classifier, images: torch.Tensor, preprocess: Preprocess, task: str, batch_size: int | None = None,
            channels_last: bool = False, start: int = 0, precision: str = "fp32") -> tuple[np.ndarray, torch.Tensor]:
    """Class probabilities (and logits) for ``images`` in eval mode, without autograd; with ``start > 0``,
    ``images`` are cached features of the trunk's first ``start`` units. Batches go to the model's device."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(preprocess.image_size)
    logits = []
    for i in range(0, len(images), batch_size):
        x = to_device(images[i:i + batch_size], device)
        if start == 0:
            x = preprocess(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits.append(model(x, start).float())
    out = torch.cat(logits)
    return probabilities(out, task).cpu().numpy(), out
