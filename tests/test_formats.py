"""Versioned artefacts (model.json, metrics.json), the data-dependent default image size, and the strategy
registry's labels and colours."""
from __future__ import annotations

import json

import pytest
import torch

from medtl import TrainConfig, build_classifier
from medtl.artifacts import load_model, save_model
from medtl.data import ImageDataset, Split
from medtl.errors import ConfigError
from medtl.formats import FORMAT_VERSION
from medtl.resolve import image_size_for
from medtl.rundir import RunDir
from medtl.strategies import STRATEGIES, colour_of, label_of


def small_model():
    return build_classifier("resnet18", 2, cut="layer1", weights=None, in_chans=1, image_size=32)


def test_model_json_records_its_format_and_old_files_load_as_version_1(tmp_path):
    save_model(small_model(), tmp_path)
    path = tmp_path / RunDir.MODEL
    values = json.loads(path.read_text())
    assert values["format_version"] == FORMAT_VERSION == 2
    load_model(tmp_path)
    del values["format_version"]  # a run saved before the field existed
    path.write_text(json.dumps(values))
    assert load_model(tmp_path).spec.image_size == 32
    path.write_text(json.dumps({**values, "format_version": 3}))
    with pytest.raises(ConfigError, match="format version 3, written by a newer medtl"):
        load_model(tmp_path)


def test_metrics_json_records_its_format_and_old_files_load_as_version_1(tmp_path):
    run = RunDir(tmp_path)
    run.write_metrics({"test_auroc": 0.5})
    assert json.loads((tmp_path / RunDir.METRICS).read_text()) == {"format_version": 2, "test_auroc": 0.5}
    (tmp_path / RunDir.METRICS).write_text(json.dumps({"test_auroc": 0.5}))
    assert run.metrics() == {"test_auroc": 0.5}
    (tmp_path / RunDir.METRICS).write_text(json.dumps({"test_auroc": 0.5, "format_version": "two"}))
    with pytest.raises(ConfigError, match="format_version must be a positive whole number"):
        run.metrics()


def dataset(shape: tuple[int, ...]) -> ImageDataset:
    def split(n: int) -> Split:
        return Split(torch.zeros((n, *shape), dtype=torch.uint8), torch.arange(n) % 2)
    return ImageDataset("toy", "binary", ["a", "b"], split(4), split(2), split(2), {"kind": "npz"})


@pytest.mark.parametrize("shape, size", [((1, 28, 28, 28), 32), ((1, 64, 64, 64), 64), ((1, 33, 40, 20), 64),
                                         ((1, 8, 8, 8), 32), ((1, 28, 28), 64), ((3, 224, 224), 64)])
def test_the_default_image_size_follows_the_data(shape, size):
    """Volumes: the smallest multiple of the network's total stride (32) at or above their stored size; 2D: 64."""
    cfg = TrainConfig(backbone="resnet18")
    assert cfg.image_size is None
    assert image_size_for(cfg, dataset(shape)) == size
    assert image_size_for(TrainConfig(backbone="resnet18", image_size=48), dataset(shape)) == 48


def test_strategy_labels_and_colours_come_from_the_registry():
    assert label_of("truncated") == "TTL" and label_of("full") == "FTL" and label_of("from-a-newer-medtl") == \
        "from-a-newer-medtl"
    colours = [colour_of(name) for name in STRATEGIES]
    assert len(set(colours)) == len(colours) and colour_of("from-a-newer-medtl") not in colours
