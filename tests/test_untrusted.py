"""Files that travel between labs are data, never code: pickle checkpoints are refused unless the user says they
trust the file (on the command line, never in a config), YAML is read safely, and a run directory's checkpoint,
model.json and weights are validated rather than executed or trusted."""
from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import torch
from conftest import FAST_ARGS, tiny_npz

import medtl
from medtl.artifacts import save_model
from medtl.backbones import create_backbone
from medtl.backbones.weights import read_state_dict
from medtl.cli import main
from medtl.errors import ConfigError, WeightsUnavailableError
from medtl.model import build_classifier
from medtl.rundir import RunDir

CHECKPOINT = RunDir.CHECKPOINT

FAST = [*FAST_ARGS, "--batch-size", "8"]


class Trap:
    """Unpickling this creates ``marker``: proof that a file was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def pickled_backbone(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A whole module saved with ``torch.save(model)``: the common pickle checkpoint."""
    model, _ = create_backbone("efficientnet_lite0", "none")
    path = tmp_path_factory.mktemp("weights") / "whole_model.pth"
    torch.save(model, path)
    return path, model


def test_pickle_checkpoint_is_refused_without_the_trust_flag(pickled_backbone, tmp_path: Path, capsys) -> None:
    path, _ = pickled_backbone
    with pytest.raises(WeightsUnavailableError, match="--trust-pickle") as info:
        read_state_dict(path)
    assert str(path) in str(info.value) and "pickled Python objects" in str(info.value)
    args = ["train", *FAST, "--data", str(tiny_npz(tmp_path / "d.npz", square=False)), "--weights", str(path)]
    assert main([*args, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "--trust-pickle" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_pickle_checkpoint_loads_with_the_trust_flag(pickled_backbone, tmp_path: Path) -> None:
    path, model = pickled_backbone
    state = read_state_dict(path, trust_pickle=True)
    loaded, _ = create_backbone("efficientnet_lite0", state)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    data = tiny_npz(tmp_path / "d.npz", square=False)
    args = ["train", *FAST, "--data", str(data), "--weights", str(path), "--trust-pickle"]
    assert main([*args, "--out", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert "trust_pickle" not in (run / "config.yaml").read_text()  # trust is given per command, never stored


def test_trust_cannot_come_from_a_config_file(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("weights: model.pth\ntrust_pickle: true\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "--trust-pickle on the command line" in err


def test_a_malicious_weights_file_is_never_executed(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "executed"
    torch.save({"conv_stem.weight": torch.zeros(1), "payload": Trap(marker)}, tmp_path / "evil.pth")
    assert main(["train", *FAST, "--weights", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "runs")]) == 2
    assert "pickled Python objects" in capsys.readouterr().err and not marker.exists()


def test_yaml_config_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    config = tmp_path / "c.yaml"
    config.write_text(f"epochs: !!python/object/apply:pathlib.Path.touch ['{marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        medtl.TrainConfig.load(config)
    assert not marker.exists()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory as `medtl train` leaves it, made without training."""
    run = tmp_path / "run"
    run.mkdir()
    model = build_classifier("efficientnet_lite0", 2, cut="blocks.1", weights=None, in_chans=1, image_size=32)
    save_model(model, run)
    RunDir(run).save_config(medtl.TrainConfig(data="breastmnist", image_size=32, cut="blocks.1"))
    return run


def test_a_checkpoint_holding_code_is_refused_on_resume(run_dir: Path, capsys) -> None:
    marker = run_dir / "executed"
    torch.save({"epoch": 1, "payload": Trap(marker)}, run_dir / CHECKPOINT)
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert str(run_dir / CHECKPOINT) in err and "never unpickles" in err and not marker.exists()
    (run_dir / CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_resume_without_a_checkpoint_says_to_start_again(run_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert f"medtl train --config {run_dir / 'config.yaml'}" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a medtl run directory" in capsys.readouterr().err


def test_tampered_model_files_are_refused(run_dir: Path, tmp_path: Path) -> None:
    spec = json.loads((run_dir / "model.json").read_text())
    (run_dir / "model.json").write_text(json.dumps({**spec, "exec": "import os"}))
    with pytest.raises(ConfigError, match="model.json is not a valid medtl model description"):
        medtl.load_model(run_dir)
    (run_dir / "model.json").write_text(json.dumps({**spec, "cut": "blocks.2"}))  # weights of another model
    with pytest.raises(ConfigError, match="model.safetensors does not hold this model's weights"):
        medtl.load_model(run_dir)
    assert main(["evaluate", str(run_dir)]) == 2
