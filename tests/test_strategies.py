"""Every strategy: which parameters exist, start pretrained, train, stay frozen; BatchNorm of frozen parts."""
from __future__ import annotations

import pytest
import torch

from medtl.errors import ConfigError
from medtl.evaluation import count_parameters
from medtl.strategies import STRATEGIES, get_strategy

BACKBONE = "efficientnet_lite0"


def _build(name, **params):
    return get_strategy(name, **params).build(BACKBONE, 2, weights="imagenet", image_size=32)


def _pretrained():
    from medtl.backbones import create_backbone

    return create_backbone(BACKBONE, "imagenet")[0].state_dict()


def test_truncated_keeps_pretrained_bottom_only():
    model = _build("truncated", cut="blocks.3")
    ref = _pretrained()
    trunk = model.trunk.state_dict()
    assert trunk and all(torch.equal(v, ref[k]) for k, v in trunk.items())
    assert not any(k.startswith(("blocks.4", "blocks.5", "blocks.6", "conv_head")) for k in trunk)
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


def test_full_and_scratch_share_architecture_not_weights():
    full, scratch = _build("full"), _build("scratch")
    assert full.spec.cut == scratch.spec.cut == "conv_head"
    assert [k for k in full.state_dict()] == [k for k in scratch.state_dict()]
    assert not torch.equal(full.trunk.conv_stem.weight, scratch.trunk.conv_stem.weight)
    assert torch.equal(full.trunk.conv_stem.weight, _pretrained()["conv_stem.weight"])


def test_linear_trains_head_only():
    model = _build("linear")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.fc.weight", "head.fc.bias"}


def test_lwft_freezes_up_to_cut():
    strategy = get_strategy("lwft", freeze_to="blocks.2", pretrained_lr_scale=0.1)
    model = strategy.build(BACKBONE, 2, image_size=32)
    frozen = {n.split(".weight")[0] for n, p in model.trunk.named_parameters() if not p.requires_grad}
    assert any(n.startswith("blocks.2.") for n in frozen) and any(n.startswith("conv_stem") for n in frozen)
    assert not any(n.startswith("blocks.3.") for n in frozen)
    groups = strategy.param_groups(model, lr=1e-3)
    assert groups[-1]["name"] == "head" and groups[-1]["lr"] == 1e-3
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups[:-1])
    assert groups[0]["name"] == "blocks.3.0"


def test_llrd_learning_rates_decay_downwards():
    strategy = get_strategy("llrd", layer_decay=0.5)
    groups = strategy.param_groups(strategy.build(BACKBONE, 2, image_size=32), lr=1.0)
    lrs = [g["lr"] for g in groups]
    assert lrs == sorted(lrs) and lrs[-1] == 1.0 and lrs[-2] == 1.0 and lrs[-3] == 0.5


@pytest.mark.parametrize("name,params", [("linear", {}), ("lwft", {"freeze_to": "blocks.2"})])
def test_frozen_batchnorm_statistics_stay_bit_identical(name, params):
    strategy = get_strategy(name, **params)
    model = strategy.build(BACKBONE, 2, image_size=32)
    frozen = strategy.frozen_units(model)
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    strategy.train_mode(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        loss = model(torch.randn(8, 3, 32, 32)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.trunk.state_dict()
    for key, value in before.items():
        if any(key.startswith(u + ".") for u in frozen):
            assert torch.equal(value, after[key]), key
    if name == "lwft":  # the unfrozen part does move
        assert not torch.equal(before["blocks.3.0.bn1.running_mean"], after["blocks.3.0.bn1.running_mean"])


def test_unknown_strategy_and_parameters():
    with pytest.raises(ConfigError, match="truncated"):
        get_strategy("truncate", cut="blocks.1")
    with pytest.raises(ConfigError, match="does not take"):
        get_strategy("full", freeze_to="blocks.1")
    with pytest.raises(ConfigError, match="--cut"):
        get_strategy("truncated")
    assert set(STRATEGIES) >= {"truncated", "full", "scratch", "linear", "lwft", "llrd"}
