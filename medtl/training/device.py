"""Where a run's tensors live and at what precision, in one place so the loop reads the same on CPU and GPU:
each helper is a no-op where it does not apply."""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..inference import PRECISIONS

DEVICE_DATA_FRACTION = 0.25  # image splits stay on the accelerator when they take at most this share of its free memory


def check_precision(precision: str, device: torch.device) -> None:
    """Fail before training on a precision the device cannot run."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; on CPU use bf16 (or fp32).")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bf16 support; use precision fp16.")



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
