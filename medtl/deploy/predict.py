"""``medtl predict``: class probabilities for image files, from a run directory or an exported ONNX model.

Files are read exactly as training read its data: ``read_image`` + ``resize_array`` to the size the training
loader stored images at (``ModelSpec.read_size``: MedMNIST's native size, a folder's ``image_size``) through
``load_images``, then the same :class:`~medtl.data.Preprocess` (resize to ``image_size``, normalise) as training and
``evaluate``. So a BreastMNIST test image written out as a PNG gets the probability of ``predictions_test.csv``.

Inputs stream through in batches and rows are written as they are computed, so memory stays bounded whatever the
number of files; the CSV appears (atomically) only when every file has been handled.
"""
from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..artifacts import MODEL_SPEC, MODEL_WEIGHTS, load_model
from ..data import Preprocess
from ..data.images import IMAGE_EXTENSIONS, load_images, read_image
from ..data.readers import Reading, parse_window, reader_for
from ..ensembles import ENSEMBLE, read_ensemble
from ..errors import ConfigError, DataError, MedtlWarning
from ..inference import predict as torch_predict
from ..model import ModelSpec
from ..optional import require
from ..files import atomic_file, check_out_file
from ..progress import progress

TTA = ("none", "hflip")
BATCH = 256  # files read and scored at once: bounds memory (256 images at 224 px RGB are 38 MB as uint8)
ONNX_FILE = "model.onnx"
SPEC_KEY = "medtl.model"  # the ONNX metadata_props entry holding the ModelSpec as JSON


@dataclass
class PredictResult:
    """What :func:`predict` did: the CSV written, how many files it scored, and the files it left out (with why)."""

    out: Path
    predicted: int
    skipped: list[str] = field(default_factory=list)


def with_tta(probabilities: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor,
             tta: str = "none") -> np.ndarray:
    """``probabilities(images)``, or with ``tta="hflip"`` its mean over the images and their horizontal mirrors.

    The flip is applied to the raw batch, before ``Preprocess``: resizing and normalising commute with it.
    """
    check_tta(tta)
    prob = probabilities(images)
    if tta == "hflip":
        prob = (prob + probabilities(images.flip(-1))) / 2
    return prob


def check_tta(tta: str) -> None:
    if tta not in TTA:
        raise ConfigError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA)}.")


class Scorer:
    """A model that maps a raw batch (uint8 or float in [0, 1], ``(N, C, H, W)``) to class probabilities."""

    spec: ModelSpec

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.preprocess = Preprocess(spec.image_size, tuple(spec.mean), tuple(spec.std), augment=False)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def files(self, paths: list[Path], images: torch.Tensor, tta: str) -> np.ndarray:
        """Probabilities of the files ``paths``, already read as ``images`` (at ``spec.read_size``)."""
        return with_tta(self, images, tta)


class TorchScorer(Scorer):
    """A run directory's model, scored with the same ``predict`` as training and ``evaluate``, in channels_last
    memory format as training scored its test split (faster on CPU)."""

    def __init__(self, run_dir: Path) -> None:
        self.model = load_model(run_dir)
        super().__init__(self.model.spec)
        self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return torch_predict(self.model, images, self.preprocess, self.spec.task, channels_last=True)[0]


class EnsembleScorer(Scorer):
    """The members of a ``medtl ensemble`` directory, each scored as its own run is (its read size, image size and
    normalisation), their probabilities averaged; binary decisions use the ensemble's validation-chosen threshold.
    Members that read files at another size than the first (folder data trained at several ``--image-size``) get
    the files read again at theirs, as their training loader read them."""

    def __init__(self, directory: Path) -> None:
        paths, threshold = read_ensemble(directory)
        self.members = [TorchScorer(p) for p in paths]
        super().__init__(replace(self.members[0].spec, threshold=threshold, temperature=None))

    def files(self, paths: list[Path], images: torch.Tensor, tta: str) -> np.ndarray:
        read = {self.spec.read_size or self.spec.image_size: images}
        prob = []
        for member in self.members:
            size = member.spec.read_size or member.spec.image_size
            if size not in read:
                read[size] = load_images(paths, size, reading=reading_of(member.spec))[0]
            prob.append(with_tta(member, match_channels(read[size], member.spec.in_chans), tta))
        return np.mean(prob, axis=0)


class OnnxScorer(Scorer):
    """An exported model run by onnxruntime; its ModelSpec comes from the file's own metadata."""

    def __init__(self, path: Path) -> None:
        ort = require_onnxruntime()
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own exception types for a bad file
            raise ConfigError(f"{path} cannot be loaded by onnxruntime ({type(e).__name__}: {e}).") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if SPEC_KEY not in meta:
            raise ConfigError(f"{path} was not exported by medtl (no {SPEC_KEY!r} metadata); export it with "
                              "`medtl export RUN`.")
        super().__init__(ModelSpec(**json.loads(meta[SPEC_KEY])))
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        x = self.preprocess(images).numpy()
        return self.session.run(None, {self.input: x})[0]


def require_onnxruntime():
    return require("onnxruntime", extra="export", purpose="scoring an exported model (model.onnx)")


def load_scorer(model: str | Path) -> Scorer:
    """A run directory (``model.safetensors`` + ``model.json``), an ``.onnx`` file, a folder holding ``model.onnx``
    (what ``medtl export`` writes), or an ensemble directory (``ensemble.json``, what ``medtl ensemble`` writes)."""
    model = Path(model)
    if model.is_file() and model.suffix.lower() == ".onnx":
        return OnnxScorer(model)
    if model.is_dir() and not (model / MODEL_WEIGHTS).is_file() and (model / ONNX_FILE).is_file():
        return OnnxScorer(model / ONNX_FILE)
    if model.is_dir() and (model / ENSEMBLE).is_file():
        return EnsembleScorer(model)
    if model.is_dir():
        return TorchScorer(model)
    raise ConfigError(f"{model} is neither a run directory ({MODEL_WEIGHTS} + {MODEL_SPEC}), an ensemble directory "
                      f"({ENSEMBLE}) nor an exported .onnx model.")


def find_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, found recursively in folders (by extension; hidden files skipped, no class
    folders needed), or listed in the ``path`` column of a CSV (relative to the CSV's folder)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += [f for f in sorted(item.rglob("*")) if f.is_file() and _is_image(f)
                      and not any(p.startswith(".") for p in f.relative_to(item).parts)]
        elif item.suffix.lower() == ".csv" and item.is_file():
            files += _csv_paths(item)
        elif item.exists() or item.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(item)  # a missing or corrupt image file is reported with the others by the reader
        else:
            raise DataError(f"{item}: no such file or folder; give image files, folders of images or a CSV with a "
                            "'path' column.")
    if not files:
        raise DataError(f"no image files found in {', '.join(map(str, inputs))}.")
    return files


def _is_image(path: Path) -> bool:
    reader = reader_for(path)
    return reader is not None and reader.kind == "image"


def reading_of(spec: ModelSpec) -> Reading:
    """How a 2D model reads files: DICOM through the run's --window, every single-frame DICOM file as an image (the
    model takes nothing else)."""
    return Reading(window=parse_window(spec.window), dicom="2d")


def _csv_paths(path: Path) -> list[Path]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or []):
            raise DataError(f"{path}: the header (line 1) must name a 'path' column; it has {reader.fieldnames}.")
        rows = [(reader.line_num, row["path"]) for row in reader]
    empty = [line for line, value in rows if not value]
    if empty:
        raise DataError(f"{path}, line {empty[0]}: the path is empty; give an image path or remove the row.")
    return [p if p.is_absolute() else path.parent / p for p in (Path(v).expanduser() for _, v in rows)]


def predict(model: str | Path | Scorer, inputs: Sequence[str | Path], out: str | Path, *,
            threshold: float | None = None, tta: str = "none", skip_bad_images: bool = False,
            batch_size: int = BATCH, verbose: bool = True) -> PredictResult:
    """Write ``out`` (CSV): per file ``path``, ``prob_<class>`` per class, ``prediction`` (the class name) and, for
    binary tasks, the ``threshold`` used: ``threshold`` if given, else the one the run chose on validation.

    Unreadable files stop it (a ``DataError`` naming the file) unless ``skip_bad_images``: then they are left out,
    returned and listed in a warning, and the rest are predicted.
    """
    check_tta(tta)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}.")
    out = check_out_file(out)  # before the model is loaded and any file read
    scorer = model if isinstance(model, Scorer) else load_scorer(model)
    if scorer.spec.volume is not None:
        raise ConfigError(f"{model} is a volume model ({scorer.spec.volume}); `medtl predict` reads 2D image files. "
                          "Score volumes with `medtl evaluate RUN --data FOLDER_OR_CSV --out DIR`, or run the exported "
                          "ONNX file on volumes preprocessed as its model.onnx.json says.")
    spec = scorer.spec
    classes = spec.classes or [str(i) for i in range(spec.num_classes)]  # runs that recorded no class names
    threshold = decision_threshold(spec, threshold)
    files = find_inputs(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    with atomic_file(out, "w", newline="") as f, progress(total=len(files), unit="img", desc="predict",
                                                          disable=not verbose or len(files) <= batch_size) as bar:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", *(f"prob_{c}" for c in classes), "prediction",
                         *(["threshold"] if spec.task == "binary" else [])])
        for paths, images, bad in read_batches(files, spec, batch_size, skip_bad_images):
            skipped += [bad[i] for i in sorted(bad)]
            if images is not None:
                kept = [p for i, p in enumerate(paths) if i not in bad]
                prob = scorer.files(kept, images, tta)
                writer.writerows(_rows(kept, prob, spec.task, classes, threshold))
            bar.update(len(paths))
        if len(skipped) == len(files):  # raised inside the block: no CSV of a header only
            raise DataError(f"none of the {len(files)} file(s) could be read, so nothing was predicted and {out} was "
                            f"not written; the first: {skipped[0]}")
    if skipped:
        shown = "\n  ".join(skipped[:20]) + ("\n  ..." if len(skipped) > 20 else "")
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s):\n  {shown}", MedtlWarning, stacklevel=2)
    return PredictResult(out, len(files) - len(skipped), skipped)


def decision_threshold(spec: ModelSpec, threshold: float | None) -> float | None:
    """The binary threshold in use: the given one, else the run's (chosen on validation), else 0.5 (older runs)."""
    if threshold is not None:
        if spec.task != "binary":
            raise ConfigError(f"--threshold applies to binary tasks; this model is {spec.task}.")
        if not 0 <= threshold <= 1:
            raise ConfigError(f"--threshold must be a probability in [0, 1], got {threshold}.")
        return threshold
    if spec.task != "binary":
        return None
    return spec.threshold if spec.threshold is not None else 0.5


def read_batches(files: list[Path], spec: ModelSpec, batch_size: int,
                 skip_bad: bool) -> Iterator[tuple[list[Path], torch.Tensor | None, dict[int, str]]]:
    """``(paths, images or None, {index in paths: why unreadable})`` per batch, read by the training loaders' code
    and given the model's channel count."""
    size = spec.read_size or spec.image_size
    for start in range(0, len(files), batch_size):
        paths = files[start:start + batch_size]
        try:
            images, bad, _ = load_images(paths, size, skip_bad=skip_bad, reading=reading_of(spec))
        except DataError:
            if not skip_bad:
                raise
            yield paths, None, {i: _why_unreadable(p, spec) for i, p in enumerate(paths)}  # none of this batch reads
            continue
        yield paths, match_channels(images, spec.in_chans), bad


def _why_unreadable(path: Path, spec: ModelSpec) -> str:
    try:
        read_image(path, reading_of(spec))
    except DataError as e:
        return str(e)
    return f"{path}: unreadable"  # not reached: load_images found no readable file in its batch


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """A batch with the model's channel count: grey files for a colour model are replicated (as the folder loader
    does when a data set mixes them); colour files for a grey model become luma (ITU-R 601, PIL's "L")."""
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, channels, -1, -1)
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        grey = (images.float() * weights).sum(1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else grey
    raise DataError(f"the images have {images.shape[1]} channels, the model expects {channels}.")


def _rows(paths: list[Path], prob: np.ndarray, task: str, classes: list[str],
          threshold: float | None) -> Iterator[list]:
    for path, p in zip(paths, prob):
        if task == "binary":
            yield [str(path), *map(float, p), classes[int(p[1] >= threshold)], threshold]
        elif task == "multilabel":
            yield [str(path), *map(float, p), ";".join(c for c, v in zip(classes, p) if v >= 0.5)]
        else:
            yield [str(path), *map(float, p), classes[int(np.argmax(p))]]
