"""A saved model reloads with medtl, and with plain timm + safetensors (the snippet in
docs/getting-started/outputs.md), identically."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

import medtl
from medtl.artifacts import save_model


@pytest.mark.parametrize("backbone,cut", [("efficientnet_lite0", "blocks.3.1"), ("resnet18", "layer3")])
def test_load_model_round_trip(tmp_path, backbone, cut):
    model = medtl.build_classifier(backbone, 3, cut=cut, weights=None, in_chans=1, image_size=32).eval()
    save_model(model, tmp_path)
    again = medtl.load_model(tmp_path)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_plain_python_reload_without_medtl(tmp_path):
    model = medtl.build_classifier("efficientnet_lite0", 2, cut="blocks.4", weights="imagenet", in_chans=1,
                                   image_size=64).eval()
    save_model(model, tmp_path)
    run = tmp_path
    # --- the docs' snippet (getting-started/outputs.md), verbatim in substance: nothing from medtl below ---
    spec, state = json.load(open(f"{run}/model.json")), load_file(f"{run}/model.safetensors")
    net = timm.create_model(spec["arch"], in_chans=spec["in_chans"])
    net.load_state_dict({k[len("trunk."):]: v for k, v in state.items() if k.startswith("trunk.")}, strict=False)
    units = [net.get_submodule(u) for u in spec["units"]]
    fc = torch.nn.Linear(*state["head.fc.weight"].shape[::-1])
    fc.load_state_dict({"weight": state["head.fc.weight"], "bias": state["head.fc.bias"]})
    net.eval()

    def predict(x):
        for unit in units:
            x = unit(x)
        return fc(x.mean((2, 3))).softmax(1)
    # ---
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(predict(x), model(x).softmax(1), rtol=1e-5, atol=1e-6)
