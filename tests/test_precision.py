"""Mixed precision and device placement: the options fail early where the device cannot run them, and each
helper is a no-op where it does not apply (the CUDA branches are exercised only on a GPU)."""
from __future__ import annotations

import pytest
import torch

from medtl.config import TrainConfig
from medtl.data import Preprocess
from medtl.errors import ConfigError
from medtl.model import build_classifier
from medtl.inference import autocast, predict, to_device
from medtl.training.device import check_precision, data_home, grad_scaler

CPU = torch.device("cpu")


def test_precision_is_validated():
    assert TrainConfig(precision="bf16").validate().precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8").validate()


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="CUDA"):
        check_precision("fp16", CPU)
    check_precision("bf16", CPU)
    check_precision("fp32", CPU)


def test_autocast_bf16_runs_convolutions_in_bf16_and_fp32_leaves_them():
    conv, x = torch.nn.Conv2d(1, 2, 3), torch.randn(1, 1, 8, 8)
    with autocast(CPU, "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert conv(x).dtype == torch.float32


def test_loss_scaling_only_for_fp16():
    assert not grad_scaler(CPU, "bf16").is_enabled() and not grad_scaler(CPU, "fp32").is_enabled()


def test_cpu_data_stays_put():
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    assert data_home(x.nbytes, CPU) == CPU and to_device(x, CPU) is x


def test_bf16_predict_returns_fp32_probabilities_close_to_fp32():
    torch.manual_seed(0)
    model = build_classifier("efficientnet_lite0", 2, cut="blocks.1", weights=None, in_chans=1, image_size=32)
    images = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8)
    pre = Preprocess(32, (0.5,), (0.5,))
    p32, logits32 = predict(model, images, pre, "binary")
    p16, logits16 = predict(model, images, pre, "binary", precision="bf16")
    assert logits16.dtype == torch.float32
    assert abs(p16 - p32).max() < 0.05
