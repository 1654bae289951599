"""Cut enumeration and truncation over the whole backbone registry, the paper's ResNet-50 counts, weights."""
from __future__ import annotations

import pytest
import torch

from medtl.backbones import BACKBONES, FAMILIES, Trunk, backbone_cuts, create_backbone, family_of, find_cut
from medtl.errors import ConfigError, WeightsUnavailableError
from medtl.evaluation import count_parameters
from medtl.model import build_classifier
from medtl.strategies import get_strategy

# The paper's kept-parameter counts for ResNet-50, 2 classes, pooled head (paper-spec.md §7.3).
RESNET50_PAPER = {
    "stem": 9_666, "layer1.0": 85_058, "layer1.1": 155_458, "layer1": 225_858, "layer2.0": 605_762,
    "layer2.1": 885_826, "layer2.2": 1_165_890, "layer2": 1_445_954, "layer3.0": 2_959_426, "layer3.1": 4_076_610,
    "layer3.2": 5_193_794, "layer3.3": 6_310_978, "layer3.4": 7_428_162, "layer3": 8_545_346,
    "layer4.0": 14_586_946, "layer4.1": 19_049_538, "layer4": 23_512_130,
}
# Stage layout of every registered family: (number of cuts, block-level cut names).
LAYOUT = {
    "resnet18": (9, ["layer1", "layer2", "layer3", "layer4"]),
    "resnet34": (17, ["layer1", "layer2", "layer3", "layer4"]),
    "resnet50": (17, ["layer1", "layer2", "layer3", "layer4"]),
    "resnet101": (34, ["layer1", "layer2", "layer3", "layer4"]),
    "densenet121": (1 + 6 + 12 + 24 + 16 + 4, [f"denseblock{i}" for i in (1, 2, 3, 4)]),
    "densenet201": (1 + 6 + 12 + 48 + 32 + 4, [f"denseblock{i}" for i in (1, 2, 3, 4)]),
    "efficientnet_b0": (18, [f"blocks.{i}" for i in range(7)] + ["conv_head"]),
    "efficientnet_lite0": (18, [f"blocks.{i}" for i in range(7)] + ["conv_head"]),
    "efficientnet_lite1": (23, [f"blocks.{i}" for i in range(7)] + ["conv_head"]),
    "efficientnet_lite2": (23, [f"blocks.{i}" for i in range(7)] + ["conv_head"]),
}
# The whole registry; the largest models (seconds to build at every cut) run only in `make test`, not test-fast.
LARGE = {"resnet34", "resnet50", "resnet101", "densenet201"}
REGISTRY = [pytest.param(name, marks=pytest.mark.slow) if name in LARGE else name for name in sorted(LAYOUT)]


def test_layout_covers_registry():
    assert set(LAYOUT) == set(BACKBONES)


@pytest.mark.parametrize("name", REGISTRY)
def test_cut_enumeration(name):
    model, _ = create_backbone(name, weights=None)
    cuts = backbone_cuts(model)
    count, blocks = LAYOUT[name]
    assert len(cuts) == count
    assert cuts[0].name == "stem" and cuts[0].level == "stem"
    assert [c.name for c in cuts if c.level == "block"] == blocks
    assert len({c.name for c in cuts}) == len(cuts)
    # every cut keeps strictly more than the one before it; the last keeps the whole feature extractor
    kept = [sum(p.numel() for p in Trunk(create_backbone(name, None)[0], c).parameters())
            for c in cuts[:: max(1, count // 6)]]
    assert kept == sorted(kept) and len(set(kept)) == len(kept)
    full = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("fc.", "classifier.")))
    assert sum(p.numel() for p in Trunk(create_backbone(name, None)[0], cuts[-1]).parameters()) == full


@pytest.mark.parametrize("name", REGISTRY)
def test_block_cuts_run_forward(name):
    model, _ = create_backbone(name, weights=None)
    for cut in [c for c in backbone_cuts(model) if c.level != "layer"]:
        clf = build_classifier(name, 3, cut=cut.name, weights=None, image_size=64).eval()
        with torch.no_grad():
            assert clf(torch.randn(2, 3, 64, 64)).shape == (2, 3)


# The smallest registered backbone of each family (a new family adds its own).
FAMILY_EXAMPLE = {"ResNet": "resnet18", "DenseNet": "densenet121", "EfficientNet": "efficientnet_lite0"}


def test_every_family_has_an_example():
    assert {family.name for family in FAMILIES} == set(FAMILY_EXAMPLE)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
def test_each_family_adapts_grey_input_trains_and_states_its_transfusion_support(family):
    """Per family (cheap: untrained models, 32 px): it claims its own backbones, its first convolution takes one
    channel for grey images and the model runs forward and backward, and TransFusion works exactly when the family
    says it supports slimming."""
    name = FAMILY_EXAMPLE[family.name]
    model, _ = create_backbone(name, None)
    assert family_of(model) is family
    first = family.first_conv(model)
    assert isinstance(model.get_submodule(first), torch.nn.Conv2d) and model.get_submodule(first).in_channels == 3
    block = next(c.name for c in family.cuts(model) if c.level == "block")
    grey = build_classifier(name, 2, cut=block, weights=None, in_chans=1, image_size=32)
    assert grey.trunk.get_submodule(first).in_channels == 1
    grey(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in grey.parameters())
    transfusion = get_strategy("transfusion", slim_from=block)
    if family.supports_slim:
        assert transfusion.build(name, 2, weights=None, image_size=32).spec.backbone == name
    else:
        with pytest.raises(ConfigError, match="TransFusion"):
            transfusion.build(name, 2, weights=None, image_size=32)


def test_resnet50_parameter_counts_equal_the_paper():
    with torch.device("meta"):  # shapes only: counting needs no initialised weights (3x faster)
        for cut, expected in RESNET50_PAPER.items():
            assert count_parameters(build_classifier("resnet50", 2, cut=cut, weights=None)) == expected, cut


def test_truncation_really_drops_layers():
    model = build_classifier("resnet50", 2, cut="layer3.3", weights=None)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("trunk.layer4") or n.startswith("trunk.layer3.4") for n in names)
    assert any(n.startswith("trunk.layer3.3.") for n in names)
    assert not any("layer4" in n for n, _ in model.named_modules())
    # kept parameters keep torchvision's names, so pretrained state dicts apply to them
    assert "trunk.layer3.3.conv1.weight" in model.state_dict()
    assert model.head.fc.in_features == 1024


def test_dense_block_cut_inside_keeps_first_layers():
    model = build_classifier("densenet121", 2, cut="denseblock2.denselayer3", weights=None, image_size=64)
    block = model.trunk.features.denseblock2
    assert list(block._modules) == ["denselayer1", "denselayer2", "denselayer3"]
    assert model.head.fc.in_features == 128 + 3 * 32  # transition1 output + 3 layers of growth 32


def test_aliases_and_unknown_cut():
    cuts = backbone_cuts(create_backbone("resnet50", None)[0])
    assert find_cut(cuts, "layer3.5").name == "layer3"
    with pytest.raises(ConfigError, match="layer3.3"):
        find_cut(cuts, "layer3.33")


def test_unknown_backbone_suggests():
    with pytest.raises(ConfigError, match="resnet50"):
        create_backbone("resnet5O", None)


def test_image_too_small_for_cut():
    with pytest.raises(ConfigError, match="image size"):
        build_classifier("efficientnet_lite0", 2, cut="conv_head", weights=None, image_size=2)


def test_grey_input_sums_first_conv():
    rgb = build_classifier("efficientnet_lite0", 2, cut="blocks.1", weights="imagenet", in_chans=3).eval()
    grey = build_classifier("efficientnet_lite0", 2, cut="blocks.1", weights="imagenet", in_chans=1).eval()
    grey.head.load_state_dict(rgb.head.state_dict())
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-4)


def test_missing_download_is_a_clear_error(monkeypatch, tmp_path):
    import torchvision.models

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match=r"resnet18-f37072fd\.pth.*--weights FILE"):
        create_backbone("resnet18", "imagenet")


class Payload:
    """Any pickled object: ``weights_only`` loading must refuse it."""


def test_weights_file_round_trip_and_pickle_refused(tmp_path):
    from safetensors.torch import save_file

    model, _ = create_backbone("resnet18", None)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    loaded, _ = create_backbone("resnet18", tmp_path / "w.safetensors")
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)

    torch.save({"state_dict": model.state_dict(), "evil": Payload()}, tmp_path / "w.pth")
    with pytest.raises(WeightsUnavailableError, match="not a plain tensor state dict"):
        create_backbone("resnet18", tmp_path / "w.pth")
    with pytest.raises(WeightsUnavailableError, match="do not fit"):
        create_backbone("resnet34", tmp_path / "w.safetensors")
