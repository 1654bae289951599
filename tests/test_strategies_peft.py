"""The strategies beyond the paper: surgical fine-tuning, Auto-RGN, BitFit, SSF, LoRA. For each, exactly which
parameters train (requires_grad and the optimiser's groups), one forward/backward, the bytes a task stores, and for
the merged methods that the saved (merged) model -- and its ONNX export -- computes what the trained one did."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import FAST, tiny_npz
from medtl.errors import ConfigError
from medtl.evaluation import count_parameters, task_bytes
from medtl.model import tapped
from medtl.strategies import STRATEGIES, get_strategy
from medtl.strategies.base import NORMS

BACKBONE = "efficientnet_lite0"
X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _build(name, in_chans=3, **params):
    strategy = get_strategy(name, **params)
    return strategy, strategy.build(BACKBONE, 2, weights=None, image_size=32, in_chans=in_chans)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _grouped(strategy, model) -> set[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)] for g in strategy.param_groups(model, 1e-3) for p in g["params"]}


def _step(strategy, model, optimizer=None):
    """One forward/backward/step on a tiny batch; returns the state before it."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = optimizer or torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1)
    strategy.train_mode(model)
    model(X).logsumexp(1).mean().backward()
    optimizer.step()
    return before


HEAD = {"head.fc.weight", "head.fc.bias"}


def test_the_new_strategies_are_registered_with_their_reference():
    references = {"surgical": "Lee et al., ICLR 2023", "auto-rgn": "Lee et al., ICLR 2023",
                  "bitfit": "Ben Zaken et al.", "ssf": "Lian et al., NeurIPS 2022", "lora": "Hu et al., ICLR 2022",
                  "head2toe": "Evci et al., ICML 2022"}
    for name, reference in references.items():
        assert reference in STRATEGIES[name].summary and STRATEGIES[name].label


def test_surgical_trains_exactly_the_tuned_group_and_the_head():
    strategy, model = _build("surgical", tune="blocks.1")
    tuned = {n for n in _trainable(model) if n.startswith("trunk.blocks.1.")}
    assert _trainable(model) == tuned | HEAD
    assert tuned == {n for n, _ in model.named_parameters() if n.startswith("trunk.blocks.1.")}
    assert [g["name"] for g in strategy.param_groups(model, 1e-3)] == ["blocks.1.0", "blocks.1.1", "head"]
    before = _step(strategy, model)
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("trunk.blocks.1.", "head.")) for k in moved)  # frozen BN statistics too
    assert strategy.train_mode(model) == 3  # conv_stem, bn1, blocks.0.0 run once per image (the prefix cache)


def test_surgical_on_a_truncated_network_and_bad_groups():
    strategy, model = _build("surgical", cut="blocks.3", tune="stem")
    assert model.spec.cut == "blocks.3"
    assert {n.split(".")[1] for n in _trainable(model) - HEAD} == {"conv_stem", "bn1"}
    with pytest.raises(ConfigError, match="--tune blocks.5 names no unit"):
        _build("surgical", cut="blocks.3", tune="blocks.5")
    with pytest.raises(ConfigError, match="--tune"):
        get_strategy("surgical")


def test_auto_rgn_scales_each_tensor_by_its_normalised_relative_gradient_norm():
    strategy, model = _build("auto-rgn", cut="blocks.3")
    norms = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, NORMS) for p, _ in m.named_parameters()}
    assert norms and not norms & _trainable(model)  # normalisation parameters are frozen
    assert _trainable(model) == {n for n, _ in model.named_parameters()} - norms
    groups = strategy.param_groups(model, 0.1)
    assert all(len(g["params"]) == 1 for g in groups) and _grouped(strategy, model) == _trainable(model)
    optimizer = torch.optim.SGD(groups, lr=0.1)
    strategy.attach_optimizer(optimizer, steps_per_epoch=10)
    before = _step(strategy, model, optimizer)
    params = dict(model.named_parameters())
    trunk = [g["name"] for g in groups if g["name"].startswith("trunk.")]
    rgn = {name: float(params[name].grad.norm() / before[name].norm()) for name in trunk}
    top = max(rgn.values())
    scale = {**{name: rgn[name] / top for name in trunk}, "head.fc.weight": 1.0, "head.fc.bias": 1.0}
    assert 0 < min(scale.values()) < 0.5  # the rates differ: some pretrained tensors move much less
    for name in ("trunk.conv_stem.weight", "trunk.blocks.3.0.conv_pw.weight", "head.fc.weight", "head.fc.bias"):
        # SGD; the new head (whose zero bias has no finite RGN) trains at the base rate
        step, expected = before[name] - params[name].detach(), 0.1 * scale[name] * params[name].grad
        assert (step - expected).norm() <= 1e-3 * expected.norm(), name
    assert all(g["lr"] == 0.1 for g in optimizer.param_groups)  # the schedule's rate is restored after the step


def test_bitfit_trains_biases_and_norm_parameters_with_frozen_statistics():
    strategy, model = _build("bitfit", cut="blocks.3")  # TTL + BitFit
    expected = {f"{n}.{p}" for n, m in model.trunk.named_modules() if isinstance(m, NORMS)
                for p, _ in m.named_parameters()}
    expected |= {f"{n}.bias" for n, m in model.trunk.named_modules() if isinstance(m, nn.Conv2d)
                 and m.bias is not None}
    assert _trainable(model) == {f"trunk.{n}" for n in expected} | HEAD == _grouped(strategy, model)
    before = _step(strategy, model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running_" in k or k.endswith(".weight") and
               "bn" not in k and not k.startswith("head"))
    assert task_bytes(model) == 4 * count_parameters(model, True)  # the delta: what trains, float32


def test_ssf_trains_a_scale_and_shift_per_normalised_channel():
    strategy, model = _build("ssf")
    channels = sum(m.num_features for m in model.trunk.modules() if isinstance(m, nn.BatchNorm2d))
    trunk = _trainable(model) - HEAD
    assert trunk and all(n.endswith((".ssf.scale", ".ssf.shift")) for n in trunk)
    assert count_parameters(model, True) == 2 * channels + sum(p.numel() for p in model.head.parameters())
    assert _grouped(strategy, model) == _trainable(model)
    before = _step(strategy, model)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.endswith("ssf.scale"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if "original" in k or "running" in k)


def test_lora_adapts_the_dense_convolutions_through_peft():
    pytest.importorskip("peft")
    strategy, model = _build("lora", lora_rank=4)
    trunk = _trainable(model) - HEAD
    assert trunk and all(".lora_A." in n or ".lora_B." in n for n in trunk)
    adapted = {n.split(".lora_")[0] for n in trunk}
    assert not any(n.endswith("conv_dw") for n in adapted)  # depthwise: peft cannot merge grouped convolutions
    assert "trunk.conv_stem" not in adapted  # timm's Conv2dSame (TF padding) is left alone
    assert "trunk.blocks.3.0.conv_pw" in adapted and "trunk.conv_head" in adapted
    assert model.trunk.get_submodule("blocks.3.0.conv_pw").lora_A["default"].out_channels == 4
    assert _grouped(strategy, model) == _trainable(model)
    before = _step(strategy, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if "base_layer" in k)


def _perturbed(name, in_chans=3, **params):
    """A model of ``name`` whose adapter is far from its identity start, as after training."""
    strategy, model = _build(name, in_chans, **params)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and not n.startswith("head"):
                p.add_(0.2 * torch.randn_like(p))
    return strategy, model.eval()


@pytest.mark.parametrize("name", ["ssf", "lora"])
def test_merged_model_is_the_plain_architecture_and_computes_the_same(name):
    if name == "lora":
        pytest.importorskip("peft")
    strategy, model = _perturbed(name, cut="blocks.3")
    with torch.no_grad():
        expected = model(X)
        merged = strategy.merged(model).eval()
        plain = get_strategy("truncated", cut="blocks.3").build(BACKBONE, 2, weights=None, image_size=32)
        assert list(merged.state_dict()) == list(plain.state_dict())
        plain.load_state_dict(merged.state_dict())
        assert torch.allclose(plain.eval()(X), expected, atol=1e-4)
        assert not torch.allclose(expected, _build("truncated", cut="blocks.3")[1].eval()(X), atol=1e-2)


@pytest.mark.slow  # exports and runs ONNX
@pytest.mark.parametrize("name", ["ssf", "lora"])
def test_onnx_export_of_a_merged_model_equals_torch(name, tmp_path):
    pytest.importorskip("onnxruntime")
    if name == "lora":
        pytest.importorskip("peft")
    from medtl.artifacts import save_model
    from medtl.config import TrainConfig
    from medtl.deploy.export import TOLERANCE, export

    strategy, model = _perturbed(name, in_chans=1, cut="blocks.2")  # tiny_npz's images are grey
    merged = strategy.merged(model)
    save_model(merged, tmp_path)
    data = tiny_npz(tmp_path / "tiny.npz")
    (tmp_path / "config.yaml").write_text(TrainConfig(data=str(data), image_size=32).to_yaml())
    result = export(tmp_path, verbose=False)
    assert result.images == 8 and result.max_abs_diff < TOLERANCE


def test_bytes_per_task_full_versus_adapter():
    _, full = _build("full")
    state = full.state_dict()
    assert task_bytes(full) == sum(v.numel() * v.element_size() for v in state.values())  # every tensor changes
    _, linear = _build("linear")
    assert task_bytes(linear) == 4 * sum(p.numel() for p in linear.head.parameters())


@pytest.mark.slow
def test_a_lora_run_saves_the_merged_model_and_reports_its_bytes(tmp_path):
    pytest.importorskip("peft")
    import medtl
    from medtl.artifacts import load_model

    result = medtl.train(data=str(tiny_npz(tmp_path / "tiny.npz")), out=str(tmp_path / "runs"), verbose=False,
                         **{**FAST, "strategy": "lora", "lora_rank": 2})
    m = result.metrics
    assert 0 < m["trainable_parameters"] < m["parameters"] and m["stored_bytes"] == 4 * m["trainable_parameters"]
    loaded = load_model(result.run_dir)  # the plain architecture model.json describes
    assert not any("lora" in k for k in loaded.state_dict())
    with torch.no_grad():
        assert torch.allclose(loaded(X[:, :1]), result.model.eval()(X[:, :1]), atol=1e-5)  # grey images


def test_head2toe_trains_a_masked_linear_head_on_every_unit_of_the_frozen_trunk():
    strategy, model = _build("head2toe", cut="blocks.3", probe_epochs=2, group_lasso=0.1, keep_features=0.25)
    assert _trainable(model) == HEAD == _grouped(strategy, model)
    assert model.spec.taps == model.spec.units
    total = model.head.fc.in_features
    assert total == sum(f.shape[1] for f in tapped(model.trunk.eval(), torch.zeros(1, 3, 32, 32), model.spec.units))
    assert strategy.train_mode(model, 1) == 0  # every unit's output is read: nothing to cache
    penalty = strategy.penalty(model, 1)
    assert penalty > 0 and strategy.penalty(model, 3) == 0.0
    before = _step(strategy, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith("trunk."))
    strategy.train_mode(model, 3)  # the first epoch after the group lasso: the strongest quarter is kept
    mask = model.head.mask
    assert int(mask.sum()) == -(-total // 4)
    norms = model.head.fc.weight.norm(dim=0)
    assert norms[mask.bool()].min() >= norms[~mask.bool()].max()


def test_head2toe_model_reloads_with_its_selection(tmp_path):
    from medtl.artifacts import load_model, save_model

    strategy, model = _build("head2toe", cut="blocks.2", probe_epochs=1, keep_features=0.5)
    strategy.train_mode(model, 2)
    save_model(model.eval(), tmp_path)
    loaded = load_model(tmp_path)
    assert torch.equal(loaded.head.mask, model.head.mask) and loaded.head.mask.sum() < loaded.head.mask.numel()
    with torch.no_grad():
        assert torch.allclose(loaded(X), model(X), atol=1e-6)


def _volume_model(name, mode, **params):
    strategy = get_strategy(name, cut="blocks.2", **params)
    return strategy, strategy.build(BACKBONE, 2, weights=None, image_size=32, volume=mode)


@pytest.mark.parametrize("mode", ["acs", "i3d"])
def test_lora_on_a_volume_model_updates_every_dense_kernel_and_merges_exactly(mode):
    from medtl.backbones.volume import VolumeConv

    strategy, model = _volume_model("lora", mode, lora_rank=3)
    dense = {f"trunk.{n}" for n, m in model.trunk.named_modules() if isinstance(m, VolumeConv) and m.groups == 1}
    trunk = _trainable(model) - HEAD
    assert dense and trunk == {f"{n}.parametrizations.weight.0.lora_{x}" for n in dense for x in "AB"}
    assert "trunk.conv_stem" in dense and not any("conv_dw" in n for n in trunk)  # the stem too; depthwise never
    assert _grouped(strategy, model) == _trainable(model)
    stem = model.trunk.conv_stem.parametrizations.weight
    assert stem[0].lora_A.shape == (3, stem.original[0].numel()) and stem[0].lora_B.shape == (stem.original.shape[0], 3)
    volume = torch.randn(2, 3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strategy.train_mode(model)
    model(volume).logsumexp(1).mean().backward()
    torch.optim.SGD(strategy.param_groups(model, 0.1), lr=0.1).step()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k.endswith(".original"))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.endswith("lora_B"))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():  # far from the identity start, as after training
            if p.requires_grad and not n.startswith("head"):
                p.add_(0.2 * torch.randn_like(p))
        model.eval()
        expected = model(volume)
        merged = strategy.merged(model).eval()
        plain = _volume_model("truncated", mode)[1]
        assert list(merged.state_dict()) == list(plain.state_dict())
        plain.load_state_dict(merged.state_dict())
        assert torch.allclose(plain.eval()(volume), expected, atol=1e-4)
        assert not torch.allclose(expected, _volume_model("truncated", mode)[1].eval()(volume), atol=1e-2)
