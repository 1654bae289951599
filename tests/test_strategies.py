"""Every strategy: which parameters exist, start pretrained, train, stay frozen; BatchNorm of frozen parts."""
from __future__ import annotations

import functools

import pytest
import torch

from medtl.errors import ConfigError
from medtl.evaluation import count_parameters
from medtl.strategies import STRATEGIES, get_strategy

BACKBONE = "efficientnet_lite0"


def _build(name, **params):
    return get_strategy(name, **params).build(BACKBONE, 2, weights="imagenet", image_size=32)


@functools.lru_cache(maxsize=1)  # read-only: one load for every test of the module
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


# the minimal options each strategy needs (the others need none)
REQUIRED = {"truncated": {"cut": "blocks.2"}, "lwft": {"freeze_to": "blocks.2"},
            "transfusion": {"slim_from": "blocks.2"}, "surgical": {"tune": "stem"}}


def test_every_registered_strategy_is_known_and_builds_under_its_name():
    assert set(STRATEGIES) == {"truncated", "full", "scratch", "linear", "lwft", "llrd", "lp-ft", "transfusion",
                               "surgical", "auto-rgn", "bitfit", "ssf", "lora", "head2toe"}
    for name in STRATEGIES:
        assert get_strategy(name, **REQUIRED.get(name, {})).name == name


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_strategy_trains_exactly_the_parameters_it_says(name):
    """For every registered strategy (cheap: one model, one forward/backward on two 32 px images, no training loop):
    the parameters that train in its first epoch are those it says train outside its frozen units, and only they get
    gradients;
    frozen units keep BatchNorm in eval mode; the optimizer groups hold each parameter that ever trains once; the
    trunk starts from ImageNet weights exactly when the strategy says it is pretrained."""
    strategy = get_strategy(name, **REQUIRED.get(name, {}))
    model = strategy.build(BACKBONE, 2, weights="imagenet", image_size=32)
    units = {path: model.trunk.get_submodule(path) for path in model.spec.units}
    assert sum(len(list(u.parameters())) for u in units.values()) == len(list(model.trunk.parameters()))
    frozen = set(strategy.frozen_units(model, epoch=1))
    # what trains inside the units that are not frozen: all of them, or what an adapter (BitFit, SSF, LoRA) adds
    # or keeps, or (Auto-RGN) everything but the normalisation parameters
    said = strategy._trained(model)
    still = strategy.adapter is not None  # under an adapter the statistics of the whole trunk stay fixed
    for path, unit in units.items():
        assert all(p.requires_grad == (path not in frozen and id(p) in said) for p in unit.parameters()), path
        fixed = path in frozen or still
        assert not any(m.training for m in unit.modules()) if fixed else unit.training, path
    assert all(p.requires_grad for p in model.head.parameters())

    never = set(strategy.frozen_units(model))  # frozen for good (a probe phase's freezing ends)
    grouped = [id(p) for group in strategy.param_groups(model, lr=1e-3) for p in group["params"]]
    ever = {id(p) for path, unit in units.items() if path not in never for p in unit.parameters() if id(p) in said}
    assert len(grouped) == len(set(grouped)) and set(grouped) == ever | {id(p) for p in model.head.parameters()}

    stem = model.trunk.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, _pretrained()["conv_stem.weight"]) == strategy.pretrained

    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 2)
    logits.logsumexp(1).mean().backward()
    # (a gradient may be exactly zero: a BatchNorm bias followed by another BatchNorm cannot shift the output)
    assert {n for n, p in model.named_parameters() if p.grad is not None} == \
        {n for n, p in model.named_parameters() if p.requires_grad}
    assert model.head.fc.weight.grad.abs().sum() > 0


# --- TransFusion, LP-FT and the frozen-prefix cache -----------------------------------------------------------

def _resnet50(name, **params):
    return get_strategy(name, **params).build("resnet50", 2, weights=None, image_size=64)


@pytest.mark.parametrize("slim_from,expected", [
    ("layer3", 12_947_522), ("layer2", 7_137_346), ("layer1", 6_101_570),  # the paper's block-wise TF, k = 3, 2, 1
    # layer-wise j = 14 (the paper's TF-2: 17.87M), j = 11 (11.54M)
    ("layer4.0", 17_873_986), ("layer3.3", 11_537_474)])
def test_transfusion_parameter_counts_of_the_paper(slim_from, expected):
    assert count_parameters(_resnet50("transfusion", slim_from=slim_from, shrink=2)) == expected


def test_transfusion_slims_later_blocks_by_the_papers_rule():
    inside = _resnet50("transfusion", slim_from="layer3.3").trunk  # a cut inside layer3
    for j in (4, 5):  # later bottlenecks of the cut's stage: inner width halved, output kept for the residual
        block = inside.get_submodule(f"layer3.{j}")
        assert (block.conv1.out_channels, block.conv2.out_channels, block.conv3.out_channels) == (128, 128, 1024)
    block = inside.get_submodule("layer4.0")  # every later stage halved, output width included
    assert (block.conv1.out_channels, block.conv3.out_channels, block.downsample[0].out_channels) == (256, 1024, 1024)
    assert inside.get_submodule("layer3.3").conv1.out_channels == 256  # kept
    boundary = _resnet50("transfusion", slim_from="layer3").trunk  # at a stage end: the whole next stage
    assert boundary.get_submodule("layer4.2").conv3.out_channels == 1024


def test_lwft_resnet50_freezes_exactly_stem_and_layer1():
    model = _resnet50("lwft", freeze_to="layer1")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert count_parameters(model) == 23_512_130
    assert {n.split(".")[1] for n in frozen} == {"conv1", "bn1", "layer1"}
    assert sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad) == 9_536 + 215_808


def test_transfusion_keeps_pretrained_bottom_with_statistics_and_reinitialises_the_rest():
    model = _build("transfusion", slim_from="blocks.4.0")
    ref, trunk = _pretrained(), model.trunk.state_dict()
    kept = [k for k in trunk if k.startswith(("conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2", "blocks.3",
                                              "blocks.4.0."))]
    assert any("running_var" in k for k in kept)
    assert all(torch.equal(trunk[k], ref[k]) for k in kept)  # weights and BatchNorm statistics
    g = model.trunk.get_submodule
    assert (g("blocks.4.1").conv_pw.out_channels, g("blocks.4.1").conv_pwl.out_channels) == (336, 112)  # inner only
    assert g("blocks.5.0").conv_pwl.out_channels == 96 and g("conv_head").out_channels == 640  # whole stages
    assert torch.equal(trunk["blocks.5.0.bn1.running_var"], torch.ones(336))  # fresh statistics, gamma 1, beta 0
    assert torch.equal(trunk["blocks.5.0.bn1.weight"], torch.ones(336))
    assert trunk["blocks.4.1.conv_pw.weight"].shape != ref["blocks.4.1.conv_pw.weight"].shape
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    assert model.head.fc.in_features == 640 and model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_transfusion_takes_the_pretrained_resnet_from_weights_including_statistics(tmp_path):
    from safetensors.torch import save_file

    from medtl.backbones import create_backbone

    state = create_backbone("resnet18", None)[0].state_dict()
    state = {k: torch.rand_like(v) if "running" in k else v for k, v in state.items()}
    save_file(state, tmp_path / "w.safetensors")
    model = get_strategy("transfusion", slim_from="stem").build("resnet18", 2, weights=str(tmp_path / "w.safetensors"),
                                                                image_size=32)
    trunk = model.trunk.state_dict()
    assert torch.equal(trunk["bn1.running_mean"], state["bn1.running_mean"])
    first = model.trunk.get_submodule("layer1.0")  # identity shortcut of 64 channels no longer fits 32: projected
    assert first.conv2.out_channels == 32 and first.downsample[0].in_channels == 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_transfusion_reloads_and_refuses_densenet(tmp_path):
    from medtl.artifacts import load_model, save_model

    model = _build("transfusion", slim_from="blocks.3", shrink=4)
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    assert (again.spec.slim_from, again.spec.shrink) == ("blocks.3", 4)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again(x), model.eval()(x))
    with pytest.raises(ConfigError, match="not available for DenseNet"):
        get_strategy("transfusion", slim_from="denseblock2").build("densenet121", 2, weights=None, image_size=32)
    with pytest.raises(ConfigError, match="--slim-from"):
        get_strategy("transfusion")
    with pytest.raises(ConfigError, match="before the cut"):
        _build("transfusion", slim_from="conv_head")


def test_lp_ft_probes_with_frozen_statistics_then_fine_tunes_everything():
    strategy = get_strategy("lp-ft", probe_epochs=2)
    model = strategy.build(BACKBONE, 2, image_size=32)
    groups = strategy.param_groups(model, lr=1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))  # trunk joins after the probe
    before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    for epoch in (1, 2):
        assert strategy.train_mode(model, epoch) == len(model.spec.units)
        assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.fc.weight", "head.fc.bias"}
        model(torch.randn(8, 3, 32, 32)).sum().backward()
    assert all(torch.equal(v, model.trunk.state_dict()[k]) for k, v in before.items())  # bit-identical
    assert strategy.train_mode(model, 3) == 0
    assert all(p.requires_grad for p in model.parameters()) and model.trunk.training
    model(torch.randn(8, 3, 32, 32))
    assert not torch.equal(before["blocks.3.0.bn1.running_mean"],
                           model.trunk.state_dict()["blocks.3.0.bn1.running_mean"])


def test_prefix_cache_matches_the_trunk_and_respects_its_bound(caplog):
    caplog.set_level("INFO", logger="medtl")
    from medtl.data import Preprocess
    from medtl.training.cache import PrefixCache

    strategy = get_strategy("lwft", freeze_to="blocks.2")
    model = strategy.build(BACKBONE, 2, image_size=32)
    prefix = strategy.train_mode(model, 1)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    plain = Preprocess(32, model.spec.mean, model.spec.std)
    cache = PrefixCache(model, plain, limit_mb=1)
    features = cache.get("val", images, prefix)
    assert cache.get("val", images, prefix) is features  # computed once
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(features, prefix), model(plain(images)), atol=1e-5)
    assert cache.get("val", images, 0) is None
    assert PrefixCache(model, plain, limit_mb=1e-4).get("train", images, prefix) is None
    assert "computed every epoch" in caplog.text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::medtl.errors.MedtlWarning")
def test_training_on_cached_features_matches_training_on_images(tmp_path):
    import medtl

    options = dict(image_size=32, epochs=2, batch_size=128, threads=1, augment=False, out=str(tmp_path), verbose=False)
    cached = medtl.train(strategy="linear", **options).metrics
    uncached = medtl.train(strategy="linear", cache_mb=0, **options).metrics
    assert cached["test_auroc"] == pytest.approx(uncached["test_auroc"], abs=1e-3)
    assert cached["val_auprc"] == pytest.approx(uncached["val_auprc"], abs=1e-3)
    lp_ft = medtl.train(strategy="lp-ft", probe_epochs=1, **options)  # the cache is dropped when the trunk thaws
    assert lp_ft.metrics["trainable_parameters"] == lp_ft.metrics["parameters"]


def test_the_strategy_list_keeps_its_columns_apart(capsys):
    """`medtl strategies`: name, label and description are separated even for the longest name and label."""
    from medtl.cli import main

    assert main(["strategies"]) in (0, None)
    rows = [line for line in capsys.readouterr().out.splitlines() if line and not line.startswith(" ")]
    assert [row.split()[0] for row in rows] == list(STRATEGIES)
    for row, entry in zip(rows, STRATEGIES.values()):
        assert row.split()[1] == entry.label, row
