"""Where a run's tensors live and at what precision, in one place so the loop reads the same on CPU and GPU:
each helper is a no-op where it does not apply."""
from __future__ import annotations

import torch

from ..errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
EVAL_PIXELS = 256 * 64 * 64  # pixels per evaluation batch (see eval_batch_size)
DEVICE_DATA_FRACTION = 0.25  # image splits stay on the accelerator when they take at most this share of its free memory


def check_precision(precision: str, device: torch.device) -> None:
    """Fail before training on a precision the device cannot run."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; on CPU use bf16 (or fp32).")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bf16 support; use precision fp16.")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for forward passes and the loss (backward follows the forward's dtypes); fp32: off."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling, which fp16 needs against gradient underflow (bf16 has fp32's range); otherwise a pass-through."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def data_home(nbytes: int, device: torch.device) -> torch.device:
    """Where the image splits are kept: on ``device`` when they fit comfortably (one copy, no per-batch
    transfers), else in host memory, with each batch copied over as it is needed."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes <= DEVICE_DATA_FRACTION * free else torch.device("cpu")


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
