"""Fast checks of predict/export input handling: the missing extra, bad paths, CSV inputs, ids in predictions."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from medtl.deploy.predict import decision_threshold, find_inputs, match_channels, require_onnxruntime, with_tta
from medtl.errors import ConfigError, DataError
from medtl.evaluation import predictions_table
from medtl.model import ModelSpec

SPEC = dict(backbone="resnet18", library="torchvision", arch="resnet18", cut="layer2", units=["layer1"], head="avg",
            num_classes=2, in_chans=1, image_size=32, mean=[0.5], std=[0.5], classes=["a", "b"], task="binary")


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r'pip install "medtl\[export\]"'):
        require_onnxruntime()


def test_inputs_from_files_folders_and_csv(tmp_path):
    (tmp_path / "f" / "deep").mkdir(parents=True)
    for name in ("f/x.png", "f/deep/y.PNG", "f/.hidden.png", "f/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,other\nf/x.png,1\n")
    found = find_inputs([tmp_path / "f", tmp_path / "list.csv", tmp_path / "missing.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["f/deep/y.PNG", "f/x.png", "f/x.png",
                                                                    "missing.png"]
    with pytest.raises(DataError, match="no such file or folder"):
        find_inputs([tmp_path / "nowhere"])
    (tmp_path / "bad.csv").write_text("file\nf/x.png\n")
    with pytest.raises(DataError, match="'path' column"):
        find_inputs([tmp_path / "bad.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        find_inputs([tmp_path / "empty"])


def test_threshold_in_use():
    spec = ModelSpec(**SPEC)
    assert decision_threshold(spec, None) == 0.5  # a run from before thresholds were stored
    spec.threshold = 0.3
    assert decision_threshold(spec, None) == 0.3 and decision_threshold(spec, 0.9) == 0.9
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        decision_threshold(spec, 1.5)
    with pytest.raises(ConfigError, match="binary"):
        decision_threshold(ModelSpec(**{**SPEC, "task": "multiclass"}), 0.5)


def test_old_model_json_without_the_new_fields_loads():
    spec = ModelSpec(**SPEC)
    assert spec.threshold is None and spec.read_size is None


def test_channels_follow_the_model():
    grey = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert match_channels(grey, 3).shape == (2, 3, 4, 4)
    assert torch.equal(match_channels(grey.expand(-1, 3, -1, -1), 1), grey)  # replicated grey is returned as is


def test_tta_averages_identity_and_mirror():
    images = torch.arange(8.0).view(1, 1, 2, 4)
    seen = []
    prob = with_tta(lambda x: seen.append(x) or np.array([[float(x[0, 0, 0, 0])]]), images, "hflip")
    assert prob[0, 0] == 1.5 and torch.equal(seen[1], images.flip(-1))
    with pytest.raises(ConfigError, match="hflip"):
        with_tta(lambda x: None, images, "vflip")


def test_predictions_table_ids():
    rows = predictions_table(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), "binary", ["a", "b"],
                             ids=["x/1.png", "test[1]"])
    assert [r["id"] for r in rows] == ["x/1.png", "test[1]"] and list(rows[0])[:3] == ["index", "id", "label"]
    assert "id" not in predictions_table(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), "binary",
                                         ["a", "b"])[0]
