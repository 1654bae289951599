"""`--weights RUN_DIR`: a medtl run's trunk as the pretrained source, truncated at the new cut; deeper cuts, other
backbones and `--cut auto` refused; the source recorded in the new run."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import FAST_ARGS, tiny_npz
from medtl.artifacts import save_model, weights_sha256
from medtl.cli import main
from medtl.errors import ConfigError
from medtl.model import build_classifier
from medtl.source import read_source
from medtl.strategies import get_strategy


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A saved colour model cut at blocks.3 whose weights differ from ImageNet's (as a fine-tuned run's would)."""
    model = build_classifier("efficientnet_lite0", 3, cut="blocks.3", weights="imagenet", image_size=32,
                             classes=["a", "b", "c"])
    torch.manual_seed(0)
    with torch.no_grad():
        for value in model.parameters():
            value.add_(torch.randn_like(value) * 0.01)
    directory = tmp_path_factory.mktemp("source")
    save_model(model, directory)
    return directory, model


def test_the_trunk_starts_from_the_source_run_up_to_the_new_cut(source):
    directory, trained = source
    src = read_source(directory, "efficientnet_lite0")
    model = get_strategy("truncated", cut="blocks.2").build("efficientnet_lite0", 2, weights=src, in_chans=1,
                                                            image_size=32)
    own, theirs = model.trunk.state_dict(), trained.trunk.state_dict()
    assert "blocks.3.0.conv_pw.weight" not in own  # truncated at the new cut
    for key, value in own.items():
        expected = theirs[key].sum(1, keepdim=True) if key == "conv_stem.weight" else theirs[key]  # grey input
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=key)
    imagenet = build_classifier("efficientnet_lite0", 2, cut="blocks.2", in_chans=1, image_size=32)
    assert not torch.equal(own["blocks.1.0.conv_pw.weight"], imagenet.trunk.state_dict()["blocks.1.0.conv_pw.weight"])
    # TransFusion takes the source's weights up to its slim point; the slimmer blocks above stay new
    slim = get_strategy("transfusion", slim_from="blocks.1").build("efficientnet_lite0", 2, weights=src, in_chans=3,
                                                                   image_size=32)
    torch.testing.assert_close(slim.trunk.state_dict()["blocks.1.1.conv_pw.weight"],
                               theirs["blocks.1.1.conv_pw.weight"])


def test_a_cut_deeper_than_the_source_or_another_backbone_is_refused(source):
    directory, _ = source
    src = read_source(directory, "efficientnet_lite0")
    with pytest.raises(ConfigError, match=r"up to 'blocks.4'.*cut at 'blocks.3'"):
        get_strategy("truncated", cut="blocks.4").build("efficientnet_lite0", 2, weights=src, image_size=32)
    with pytest.raises(ConfigError, match="cut at 'blocks.3'"):  # full fine-tuning keeps everything
        get_strategy("full").build("efficientnet_lite0", 2, weights=src, image_size=32)
    with pytest.raises(ConfigError, match="is a 'efficientnet_lite0'; this run's --backbone is resnet18"):
        read_source(directory, "resnet18")
    with pytest.raises(ConfigError, match="not a finished medtl run"):
        read_source(directory.parent, "efficientnet_lite0")


def test_cli_refuses_cut_auto_and_deeper_cuts_with_status_2(source, tmp_path, capsys):
    directory, _ = source
    data = tiny_npz(tmp_path / "tiny.npz")
    base = [*FAST_ARGS, "--data", str(data), "--weights", str(directory), "--out", str(tmp_path / "runs")]
    assert main(["train", *base, "--cut", "auto"]) == 2
    assert "kept only its bottom (cut 'blocks.3')" in capsys.readouterr().err
    assert main(["train", *base, "--cut", "blocks.5"]) == 2
    assert "deeper than the source run" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_a_run_records_its_source(source, tmp_path, capsys):
    directory, _ = source
    data = tiny_npz(tmp_path / "tiny.npz")
    assert main(["train", *FAST_ARGS, "--data", str(data), "--weights", str(directory), "--cut", "blocks.2",
                 "--out", str(tmp_path / "runs"), "--name", "target"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    recorded = json.loads((run / "metrics.json").read_text())["weights_source"]
    assert recorded == {"run": str(directory.resolve()), "sha256": weights_sha256(directory),
                        "backbone": "efficientnet_lite0", "cut": "blocks.3", "image_size": 32, "data": None}
    assert weights_sha256(directory) in (run / "MODEL_CARD.md").read_text()
