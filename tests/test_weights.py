"""The offline EfficientNet-Lite ImageNet weights: the key mapping loads strictly and the models are real
ImageNet classifiers (they recognise scikit-image's sample photos)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medtl.backbones import create_backbone
from medtl.backbones import weights as W


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lite_mapping_is_strict_and_complete(variant):
    state = W.read_state_dict(W.lite_package_file(variant))
    model, _ = create_backbone(f"efficientnet_lite{variant}", None)
    mapped = W.lite_to_timm(state, [len(s) for s in model.blocks])
    assert set(mapped) == set(model.state_dict())
    model.load_state_dict(mapped, strict=True)


def _top5(model, image, mean, std, size):
    x = torch.tensor(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()(x).softmax(1)[0].topk(5)


@pytest.mark.parametrize("variant,size", [(0, 224), (1, 240), (2, 260)])
def test_lite_ranks_imagenet_classes(variant, size):
    skimage = pytest.importorskip("skimage.data")
    from torchvision.models import ResNet18_Weights

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    model, spec = create_backbone(f"efficientnet_lite{variant}", "imagenet")
    cat = {categories[i] for i in _top5(model, skimage.chelsea(), spec.mean, spec.std, size).indices[:3].tolist()}
    assert cat & {"tabby", "tiger cat", "Egyptian cat"}
    probs, idx = _top5(model, skimage.coffee(), spec.mean, spec.std, size)
    assert categories[idx[0]] == "espresso" and probs[0] > 0.5


def test_random_weights_are_not_imagenet():
    pretrained, _ = create_backbone("efficientnet_lite0", "imagenet")
    random, _ = create_backbone("efficientnet_lite0", "none")
    assert not torch.equal(pretrained.conv_stem.weight, random.conv_stem.weight)


def test_lite_file_in_original_naming_loads_through_weights_path():
    path = W.lite_package_file(0)
    from_path, _ = create_backbone("efficientnet_lite0", path)
    builtin, _ = create_backbone("efficientnet_lite0", "imagenet")
    assert torch.equal(from_path.blocks[3][0].conv_pw.weight, builtin.blocks[3][0].conv_pw.weight)
