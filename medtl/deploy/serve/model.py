"""The served model, without torch: the ONNX file(s) that ``medtl export`` wrote and checked against torch, with the
preprocessing of ``medtl predict`` redone in numpy and PIL.

A run directory is served from its ``export/model.onnx``. A run that has none is refused with the command to make it
rather than exported on the fly: exporting needs torch, the export extra and the run's own data set (its parity check
against torch), takes tens of seconds, and would write into the run directory; a service starts from an artefact that
was checked once, and starts fast. An export older than the run's weights (a run resumed after exporting) is refused
the same way.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...data.images import resize_array
from ...data.readers import Reading, parse_window
from ...errors import ConfigError, DataError
from ...optional import require

ONNX_FILE = "model.onnx"  # as medtl.deploy.predict names them (that module imports torch)
SPEC_KEY = "medtl.model"
EXPORT_DIR = "export"
WEIGHTS = "model.safetensors"
ENSEMBLE = "ensemble.json"
MODEL_CARD = "MODEL_CARD.md"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as predict.match_channels


def require_onnxruntime():
    return require("onnxruntime", extra="export", purpose="medtl serve")  # the serve extra installs it too


@dataclass
class Member:
    """One ONNX model and the preprocessing of its inputs (its ModelSpec, from the file's metadata)."""

    path: Path
    spec: dict
    session: object
    input: str
    sha256: str
    preprocessing: dict

    @classmethod
    def load(cls, path: Path, threads: int | None = None) -> Member:
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own exception types for a bad file
            raise ConfigError(f"{path} cannot be loaded by onnxruntime ({type(e).__name__}: {e}).") from e
        meta = session.get_modelmeta().custom_metadata_map
        if SPEC_KEY not in meta:
            raise ConfigError(f"{path} was not exported by medtl (no {SPEC_KEY!r} metadata); export it with "
                              "`medtl export RUN`.")
        spec = json.loads(meta[SPEC_KEY])
        if spec.get("volume"):
            raise ConfigError(f"{path} is a volume model ({spec['volume']}); medtl serve takes 2D image files.")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(path, spec, session, session.get_inputs()[0].name, digest, json.loads(meta.get("preprocessing",
                                                                                               "{}")))

    @property
    def read_size(self) -> int:
        return self.spec.get("read_size") or self.spec["image_size"]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """A decoded image ``(H, W, C)`` as this model's input ``(C, S, S)``: exactly what ``medtl predict`` does
        with torch (``load_images`` at the read size, ``match_channels``, ``Preprocess``), in numpy and PIL."""
        a = match_channels(resize_array(image, self.read_size), self.spec["in_chans"])
        a = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a.astype(np.float32)
        size = self.spec["image_size"]
        if a.shape[:2] != (size, size):  # bilinear; PIL's filter is antialiased as torch's is when shrinking
            a = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c]), "F").resize(
                (size, size), Image.BILINEAR)) for c in range(a.shape[2])], axis=-1)
        mean, std = channel_stats(self.spec["mean"], self.spec["std"], a.shape[2])
        return ((a - mean) / std).transpose(2, 0, 1).astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch})[0]


def match_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W, C)`` with the model's channel count, as ``medtl.deploy.predict.match_channels`` (an 8-bit colour
    image for a grey model becomes 8-bit luma, rounded)."""
    if a.shape[2] == channels:
        return a
    if a.shape[2] == 1:
        return np.repeat(a, channels, axis=2)
    if channels == 1:
        grey = (a.astype(np.float32) * LUMA).sum(-1, keepdims=True)
        return np.clip(np.round(grey), 0, 255).astype(np.uint8) if a.dtype == np.uint8 else grey
    raise DataError(f"the image has {a.shape[2]} channels, the model expects {channels}.")


def channel_stats(mean: list[float], std: list[float], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation of ``channels`` channels, as ``Preprocess`` does (a grey image: the means of the entries)."""
    if len(mean) == channels:
        pass
    elif channels == 1:
        mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
    elif len(mean) == 1:
        mean, std = mean * channels, std * channels
    else:
        raise ConfigError(f"mean/std have {len(mean)} entries but the images have {channels} channels")
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


@dataclass
class ServedModel:
    """What ``medtl serve`` runs: one model or an ensemble's members (probabilities averaged), with the decision
    rule of the run (binary: the threshold chosen on validation) and what ``GET /metadata`` tells."""

    members: list[Member]
    name: str
    threshold: float | None
    card: str | None

    @property
    def spec(self) -> dict:
        return self.members[0].spec

    @property
    def classes(self) -> list[str]:
        return self.spec.get("classes") or [str(i) for i in range(self.spec["num_classes"])]

    @property
    def version(self) -> str:
        """The first 12 hex digits of the SHA-256 of the ONNX file(s): changes whenever the weights do."""
        digest = hashlib.sha256("".join(m.sha256 for m in self.members).encode()).hexdigest()
        return (self.members[0].sha256 if len(self.members) == 1 else digest)[:12]

    @property
    def reading(self) -> Reading:
        """How uploads are decoded: as ``medtl predict`` reads files for this model (DICOM through the run's
        ``--window``, every single-frame DICOM file as an image)."""
        return Reading(window=parse_window(self.spec.get("window")), dicom="2d")

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(m.prepare(image) for m in self.members)

    def __call__(self, batches: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.mean([m(b) for m, b in zip(self.members, batches)], axis=0)

    def decide(self, prob: np.ndarray) -> dict:
        """One image's answer, with the rule and names of ``medtl predict``'s CSV."""
        task, classes = self.spec.get("task", "multiclass"), self.classes
        out = {"probabilities": {c: float(p) for c, p in zip(classes, prob)}}
        if task == "binary":
            out["prediction"] = classes[int(prob[1] >= self.threshold)]
            out["threshold"] = self.threshold  # on the probability of the positive class, classes[1]
            out["positive_class"] = classes[1]
        elif task == "multilabel":
            out["prediction"] = [c for c, p in zip(classes, prob) if p >= 0.5]
        else:
            out["prediction"] = classes[int(np.argmax(prob))]
        return out


def load(model: str | Path, threads: int | None = None) -> ServedModel:
    """A ``model.onnx``, a folder holding one (what ``medtl export`` writes), a run directory with its export, or an
    ensemble directory whose members all have theirs."""
    model = Path(model)
    if model.is_file() and model.suffix.lower() == ".onnx":
        return _single(model, model.parent, model.stem, threads)
    if model.is_dir() and (model / ENSEMBLE).is_file():
        return _ensemble(model, threads)
    if model.is_dir() and (model / ONNX_FILE).is_file():
        name = model.parent.name if model.name == EXPORT_DIR else model.name
        return _single(model / ONNX_FILE, model, name, threads)
    if model.is_dir() and (model / WEIGHTS).is_file():
        return _single(exported(model), model, model.name, threads)
    raise ConfigError(f"{model} is neither an exported model.onnx (or the folder `medtl export` wrote), a run "
                      f"directory nor an ensemble directory ({ENSEMBLE}).")


def exported(run: Path) -> Path:
    """The run's ``export/model.onnx``, refused when missing or older than the run's weights."""
    path = run / EXPORT_DIR / ONNX_FILE
    if not path.is_file():
        raise ConfigError(f"{run} has no exported model ({EXPORT_DIR}/{ONNX_FILE}); medtl serve runs ONNX models "
                          f"without torch. Export it first (checked against torch on the run's data): medtl export "
                          f"{run}")
    if path.stat().st_mtime < (run / WEIGHTS).stat().st_mtime:
        raise ConfigError(f"{path} is older than {run / WEIGHTS} (the run changed after it was exported); export it "
                          f"again: medtl export {run}")
    return path


def _single(path: Path, home: Path, name: str, threads: int | None) -> ServedModel:
    member = Member.load(path, threads)
    card = home / MODEL_CARD
    return ServedModel([member], name, _threshold(member.spec, None), card.read_text("utf-8") if card.is_file()
                       else None)


def _ensemble(directory: Path, threads: int | None) -> ServedModel:
    try:
        record = json.loads((directory / ENSEMBLE).read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{directory / ENSEMBLE} cannot be read ({e}).") from e
    runs = [Path(p) for p in record.get("members", [])]
    if not runs:
        raise ConfigError(f"{directory / ENSEMBLE} lists no member runs.")
    missing = [r for r in runs if not (r / EXPORT_DIR / ONNX_FILE).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} member(s) of the ensemble {directory} have no exported model; export "
                          f"each first: " + "; ".join(f"medtl export {r}" for r in missing))
    members = [Member.load(exported(r), threads) for r in runs]
    if len({(tuple(m.spec.get("classes") or []), m.spec.get("task")) for m in members}) > 1:
        raise ConfigError(f"the members of {directory} do not share classes and task.")
    card = directory / MODEL_CARD
    return ServedModel(members, directory.name, _threshold(members[0].spec, record.get("threshold")),
                       card.read_text("utf-8") if card.is_file() else None)


def _threshold(spec: dict, given: float | None) -> float | None:
    """As ``decision_threshold``: binary tasks use the one chosen on validation, else 0.5 (older runs)."""
    if spec.get("task") != "binary":
        return None
    threshold = given if given is not None else spec.get("threshold")
    return 0.5 if threshold is None else float(threshold)
