"""``medtl export RUN --format onnx``: one self-contained ONNX file that checks itself against torch.

The graph takes the *preprocessed* batch, float32 NCHW ``(batch, C, S, S)`` (volume models: NCDHW ``(batch, C, S, S,
S)``) with a dynamic batch axis, and returns
class probabilities (softmax; sigmoid for multi-label). Reading, resizing and normalising stay outside the graph,
described in the file's ``metadata_props`` and in ``model.onnx.json`` beside it, so any runtime can reproduce them;
``medtl predict model.onnx`` does them with the same code as training. The weights are inside the file (no
``.onnx.data``); the exporter is ``torch.onnx.export(dynamo=True)`` at a fixed opset.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..artifacts import load_model
from ..files import atomic_write, check_out_dir, write_json
from ..config import TrainConfig
from ..data import Preprocess
from ..errors import ConfigError, MedtlError
from ..inference import predict as torch_predict
from ..inference import probabilities
from ..model import Classifier
from ..optional import require_all
from ..resolve import load_data
from ..rundir import RunDir
from ..files import make_dir
from .card import MODEL_CARD
from .predict import ONNX_FILE, SPEC_KEY, OnnxScorer

OPSET = 18
TOLERANCE = 1e-4  # max |onnxruntime - torch| over the probabilities of the parity images
PARITY_IMAGES = 64
FORMATS = ("onnx",)
IMAGE_STEPS = ("decode (grey stays 1 channel, colour RGB, alpha on black; DICOM: modality LUT, the run's window or "
               "the file's VOI, MONOCHROME1 inverted, see docs/guide/dicom.md); resize to read_size (PIL bilinear); "
               "scale to [0, 1] (8-bit: /255, 16-bit: /65535); resize to image_size (bilinear, antialiased when "
               "shrinking); "
               "subtract mean, divide by std (a grey model uses the means of the 3 entries)")
VOLUME_STEPS = ("read the volume (MedMNIST array, NIfTI, or a DICOM series ordered by slice position with its rescale "
                "applied); resample to the run's spacing if it has one; map to [0, 1] through the run's window, else "
                "the volume's min-max; resize to image_size cubed (area when every axis shrinks, else trilinear); "
                "subtract mean, divide by std (the means of the 3 entries)")


class ExportError(MedtlError):
    """The exported model does not reproduce the run's model."""


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float
    images: int


class WithProbabilities(nn.Module):
    """The classifier followed by the task's output function, so the file returns what ``predict`` reports."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.model(x), self.model.spec.task)


def export(run: str | Path, out: str | Path | None = None, format: str = "onnx", verbose: bool = True) -> ExportResult:
    """Write ``out/model.onnx`` (default ``out``: ``RUN/export``), ``model.onnx.json`` and the run's model card, then
    check onnxruntime's probabilities against torch's on up to 64 test images of the run's data set."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    # onnxscript: the dynamo exporter needs it; onnxruntime: the export is checked against PyTorch
    onnx, _, _ = require_all(["onnx", "onnxscript", "onnxruntime"], extra="export", purpose="medtl export")
    run = Path(run)
    out = check_out_dir(out if out is not None else run / "export")  # before the export's half minute of work
    model = load_model(run)
    spec = model.spec
    make_dir(out)
    path = out / ONNX_FILE
    example = torch.zeros(2, *spec.input_shape)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export.") as tmp:  # model.onnx appears whole or not at all
        torch.onnx.export(WithProbabilities(model).eval(), (example,), str(Path(tmp) / ONNX_FILE), dynamo=True,
                          external_data=False, opset_version=OPSET, input_names=["input"],
                          output_names=["probabilities"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                          verbose=False)
        proto = onnx.load(str(Path(tmp) / ONNX_FILE))
    info = describe(model)
    del proto.metadata_props[:]
    for key, value in info["metadata"].items():
        proto.metadata_props.add(key=key, value=value)
    atomic_write(path, proto.SerializeToString())
    write_json(out / f"{ONNX_FILE}.json", info)
    if (run / MODEL_CARD).is_file() and out.resolve() != run.resolve():
        shutil.copyfile(run / MODEL_CARD, out / MODEL_CARD)
    images = parity_images(run, spec.image_size)
    plain = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)
    diff = float(np.abs(OnnxScorer(path)(images) - torch_predict(model, images, plain, spec.task)[0]).max())
    if verbose:
        print(f"{path}: onnxruntime vs torch on {len(images)} test images of the run's data: max |difference| of the "
              f"probabilities {diff:.2e} (required < {TOLERANCE:.0e})")
    if not diff < TOLERANCE:
        raise ExportError(f"{path} does not reproduce the run's model: onnxruntime's probabilities differ from "
                          f"torch's by up to {diff:.2e} (limit {TOLERANCE:.0e}); do not use it, and report the "
                          f"backbone ({spec.backbone}, cut {spec.cut}).")
    return ExportResult(path, diff, len(images))


def describe(model: Classifier) -> dict:
    """What a runtime needs besides the graph: input layout and preprocessing, classes, threshold, provenance.
    ``metadata`` holds the same as flat strings (ONNX ``metadata_props``), the ModelSpec whole under ``medtl.model``."""
    spec = model.spec
    steps = VOLUME_STEPS if spec.volume else IMAGE_STEPS
    preprocessing = {
        "read_size": spec.read_size or spec.image_size, "image_size": spec.image_size, "channels": spec.in_chans,
        "mean": spec.mean, "std": spec.std, "steps": steps,
    }
    info = {
        "format": "onnx", "opset": OPSET, "medtl_version": __version__, "torch_version": torch.__version__,
        "input": {"name": "input", "layout": "NCDHW" if spec.volume else "NCHW", "dtype": "float32",
                  "shape": ["batch", *spec.input_shape]},
        "output": {"name": "probabilities", "shape": ["batch", spec.num_classes],
                   "function": "sigmoid" if spec.task == "multilabel" else "softmax"},
        "preprocessing": preprocessing, "classes": spec.classes, "task": spec.task, "threshold": spec.threshold,
        "backbone": spec.backbone, "cut": spec.cut,
    }
    info["metadata"] = {
        SPEC_KEY: json.dumps(spec.to_dict()), "medtl.version": __version__, "opset": str(OPSET),
        "preprocessing": json.dumps(preprocessing), "classes": json.dumps(spec.classes), "task": spec.task,
        "threshold": json.dumps(spec.threshold), "backbone": spec.backbone, "cut": spec.cut,
    }
    return info


def parity_images(run: Path, image_size: int) -> torch.Tensor:
    """Up to 64 test images of the run's own data set, as its loader stores them."""
    cfg = TrainConfig.load(run / RunDir.CONFIG) if (run / RunDir.CONFIG).is_file() else None
    if cfg is None:
        raise ConfigError(f"{run} has no config.yaml, so its data set (needed to check the export) is unknown.")
    data = load_data(replace(cfg, image_size=image_size, skip_bad_images=True))  # volumes: the run's window, spacing
    return data.test.images[:PARITY_IMAGES]
