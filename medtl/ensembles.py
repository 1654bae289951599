"""``medtl ensemble``: average the class probabilities of several finished runs (seeds, cuts, image sizes) on the
same images, and write the artefacts of a run for the average.

Selection stays on validation: the members' validation probabilities (``predictions_val.csv``) are averaged too, and
the ensemble's decision threshold and temperature are chosen on that average, never on the test split. Members must
have been scored on the same images: the ids and labels of their prediction tables must agree, and so must their
records of the pixels (``data_fingerprint`` in ``metrics.json``) where they stored the images at one size; else the
ensemble is refused. Truncated members are small, so
the ensemble's cost (summed parameters, MACs and batch-1 CPU latency of its members) is reported beside its metrics.

An ensemble directory holds ``ensemble.json`` (members, with a SHA-256 of each member's weights, the threshold and the
temperature), ``metrics.json``, ``predictions_{val,test}.csv`` and ``MODEL_CARD.md``; ``medtl predict DIR`` runs every
member and averages their probabilities.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import MODEL_SPEC, MODEL_WEIGHTS, load_model, weights_sha256
from .deploy.card import MODEL_CARD, ensemble_card
from .errors import ConfigError, DataError, MedtlError
from .evaluation import (
    classification_metrics,
    evidence,
    latency_ms,
    predictions_table,
    with_calibrated,
)
from .evaluation.threshold import run_operating_point
from .model import ModelSpec
from .provenance import provenance
from .rundir import RunDir, make_dir

ENSEMBLE = "ensemble.json"
SPLITS = ("val", "test")
# the options that choose a run's images and their splits (besides the seed of drawn splits)
DATA_OPTIONS = ("data", "data_root", "split", "resplit", "group_by", "skip_bad_images", "window", "spacing")


@dataclass
class EnsembleResult:
    """What :func:`ensemble` wrote: the metrics (as ``metrics.json``), the directory and the member runs."""

    metrics: dict
    out: Path
    members: list[Path]


@dataclass
class Scores:
    """One split of a prediction table: image ids, labels and class probabilities, in the table's order."""

    ids: list[str]
    labels: np.ndarray
    probs: np.ndarray


def ensemble(runs: list[str | Path], out: str | Path, *, bootstrap: int = 2000, seed: int = 0,
             target_sensitivity: float | None = None) -> EnsembleResult:
    """Average the probabilities of ``runs`` on their validation and test images and write the result to ``out``.

    ``bootstrap`` resamples (seeded by ``seed``) give the 95% intervals; ``target_sensitivity`` chooses the binary
    threshold on the averaged validation probabilities as ``medtl train --target-sensitivity`` does."""
    members = [RunDir(Path(r).resolve()) for r in runs]
    out = Path(out).resolve()
    _check_members(members, out)
    specs = [member_spec(m) for m in members]
    records = [m.metrics() for m in members]
    _check_same_task(members, specs)
    _check_same_data(members, specs, records)
    tables = {split: [read_scores(m, split) for m in members] for split in SPLITS}
    for split, table in tables.items():
        _check_same_images(members, table, split)
    task, classes = specs[0].task, specs[0].classes
    val, test = tables["val"][0], tables["test"][0]  # ids and labels, the same in every member
    val_prob, test_prob = (np.mean([t.probs for t in tables[s]], axis=0) for s in SPLITS)
    ordinal = any(cfg.ordinal or cfg.ordinal_head for cfg in (m.load_config() for m in members))
    stats, calibrated, temperature = evidence(test.labels, test_prob, _logits(test_prob, task), val.labels,
                                              _logits(val_prob, task), task, classes, ordinal=ordinal,
                                              bootstrap=bootstrap, seed=seed)
    operating = run_operating_point(val.labels, val_prob, test.labels, test_prob, task, target_sensitivity)
    cost = member_cost(members, specs, records)
    first = records[0]
    metrics = {
        **{f"test_{k}": v for k, v in classification_metrics(test.labels, test_prob, task, "test").items()},
        **operating,
        "val_loss": _nll(val.labels, val_prob, task),
        **{f"val_{k}": v for k, v in classification_metrics(val.labels, val_prob, task, "val").items()},
        **stats,
        **cost,
        "strategy": "ensemble", "members": len(members),
        "backbone": "+".join(dict.fromkeys(s.backbone for s in specs)),
        "cut": "+".join(dict.fromkeys(str(s.cut) for s in specs)), "seed": [r.get("seed") for r in records],
        "train_seconds": sum(r.get("train_seconds") or 0.0 for r in records),
        "data": first.get("data"), "data_source": first.get("data_source"), "split_counts": first.get("split_counts"),
        "data_fingerprint": first.get("data_fingerprint"),
        "member_runs": [member_record(m, s, r) for m, s, r in zip(members, specs, records)],
        "provenance": provenance(),
    }
    run = RunDir(make_dir(out))
    run.write_json(ENSEMBLE, {"members": [str(m.path) for m in members],
                              "sha256": [weights_sha256(m.path) for m in members],
                              "task": task, "classes": classes, "threshold": operating.get("threshold"),
                              "temperature": temperature})
    run.write_predictions(with_calibrated(predictions_table(test.labels, test_prob, task, classes, test.ids),
                                          calibrated, classes))
    run.write_predictions(predictions_table(val.labels, val_prob, task, classes, val.ids), "val")
    run.write_metrics(metrics)
    run.write_text(MODEL_CARD, ensemble_card(out))
    return EnsembleResult(metrics, out, [m.path for m in members])


def _check_members(members: list[RunDir], out: Path) -> None:
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two runs.")
    seen = set()
    for m in members:
        if m.path in seen:
            raise ConfigError(f"{m.path} is given twice; each run can be a member once.")
        seen.add(m.path)
        if not m.finished or not (m.path / MODEL_SPEC).is_file():
            raise ConfigError(f"{m.path} is not a finished medtl run (no metrics.json or {MODEL_SPEC}); ensembles "
                              "are made of finished runs.")
        if m.path == out:
            raise ConfigError(f"--out {out} is one of the member runs; write the ensemble somewhere else.")
    if (out / RunDir.CONFIG).is_file():
        raise ConfigError(f"--out {out} is a training run ({RunDir.CONFIG}); write the ensemble somewhere else.")


def member_spec(run: RunDir) -> ModelSpec:
    return ModelSpec.from_dict(json.loads((run.path / MODEL_SPEC).read_text(encoding="utf-8")),
                               str(run.path / MODEL_SPEC))


def _check_same_task(members: list[RunDir], specs: list[ModelSpec]) -> None:
    for m, s in zip(members[1:], specs[1:]):
        if (s.task, s.classes) != (specs[0].task, specs[0].classes):
            raise DataError(f"{m.path} predicts {s.task} classes {s.classes}, {members[0].path} {specs[0].task} "
                            f"classes {specs[0].classes}; the members of an ensemble must predict the same classes.")


def _check_same_data(members: list[RunDir], specs: list[ModelSpec], records: list[dict]) -> None:
    """Members that stored their images at one size have the same record of them (``data_fingerprint``: a digest of
    the pixels and labels of each split). Members stored at other sizes (folder data at another ``--image-size``,
    MedMNIST at another resolution) have other pixels by design; for them the ids and labels of the prediction
    tables are the check (:func:`_check_same_images`)."""
    first: dict[int | None, int] = {}
    for i, (s, r) in enumerate(zip(specs, records)):
        j = first.setdefault(s.read_size or s.image_size, i)
        mine, theirs = r.get("data_fingerprint") or {}, records[j].get("data_fingerprint") or {}
        differ = [split for split in SPLITS if split in mine and split in theirs and mine[split] != theirs[split]]
        if differ:
            raise DataError(f"{members[i].path} was scored on other {' and '.join(differ)} images than "
                            f"{members[j].path} ({_data_difference(members[i], members[j])}); an ensemble averages "
                            "runs on the same images: same data, split fractions, seed of drawn splits (--split-seed "
                            "fixes it across seeds) and --resplit.")


def _data_difference(a: RunDir, b: RunDir) -> str:
    """What, in the two runs' configs, makes their images differ: the options that choose the data and its splits."""
    try:
        ca, cb = a.load_config(), b.load_config()
    except MedtlError:
        return "their data fingerprints differ"
    changed = [f"{k} {getattr(ca, k)!r} vs {getattr(cb, k)!r}" for k in DATA_OPTIONS
               if getattr(ca, k) != getattr(cb, k)]
    if ca.data_seed != cb.data_seed:
        given = "--split-seed" if ca.split_seed is not None or cb.split_seed is not None else "--seed (no --split-seed)"
        changed.append(f"the seed of the drawn splits, {ca.data_seed} vs {cb.data_seed}, from {given}")
    if not changed:
        return "the same data options, so the data itself changed between the runs"
    return "their data differ by " + "; ".join(changed)


def read_scores(run: RunDir, split: str) -> Scores:
    """``predictions_<split>.csv`` of a run (multi-label tables have a ``label_<class>`` column per label)."""
    path = run.path / f"predictions_{split}.csv"
    if not path.is_file():
        hint = (f"runs written before medtl saved validation predictions lack it: `medtl train --resume {run.path}` "
                "writes it without training again" if split == "val" else "is the run finished?")
        raise ConfigError(f"{path} is missing; {hint}.")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames or [], list(reader)
    probs = [c for c in columns if c.startswith("prob_")]
    labels = ["label"] if "label" in columns else [c for c in columns if c.startswith("label_")]
    if not rows or not probs or not labels or "id" not in columns:
        raise ConfigError(f"{path} is not a medtl predictions table with image ids (columns id, label, prob_<class>).")
    try:
        y = np.array([[int(r[c]) for c in labels] for r in rows])
        p = np.array([[float(r[c]) for c in probs] for r in rows])
    except ValueError as e:
        raise ConfigError(f"{path} is damaged ({e}).") from None
    return Scores([r["id"] for r in rows], y[:, 0] if labels == ["label"] else y, p)


def _check_same_images(members: list[RunDir], scores: list[Scores], split: str) -> None:
    """The members' tables of one split list the same images, in the same order, with the same labels."""
    first = scores[0]
    for m, s in zip(members[1:], scores[1:]):
        if s.ids != first.ids or not np.array_equal(s.labels, first.labels):
            what = (f"{len(s.ids)} vs {len(first.ids)} images" if len(s.ids) != len(first.ids) else
                    "other image ids" if s.ids != first.ids else "other labels")
            raise DataError(f"the {split} predictions of {m.path} and {members[0].path} are not of the same images "
                            f"({what}); an ensemble averages runs scored on the same images.")


def _logits(prob: np.ndarray, task: str) -> np.ndarray:
    """Logits whose softmax (sigmoid for multi-label) is ``prob``: what temperature scaling divides."""
    p = np.clip(prob, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p)) if task == "multilabel" else np.log(p)


def _nll(labels: np.ndarray, prob: np.ndarray, task: str) -> float:
    """The validation loss of the averaged probabilities (cross-entropy; binary cross-entropy per label)."""
    p = np.clip(prob, 1e-12, 1 - 1e-12)
    if task == "multilabel":
        return float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())
    return float(-np.log(p[np.arange(len(labels)), labels]).mean())


def member_cost(members: list[RunDir], specs: list[ModelSpec], records: list[dict]) -> dict:
    """Summed parameters and MACs (from the members' records) and summed batch-1 CPU latency, measured here on every
    member in turn with the current thread count: what running the ensemble costs."""
    latencies = []
    for m, s in zip(members, specs):
        model = load_model(m.path)
        latencies.append(latency_ms(model, s.in_chans, s.image_size, dims=len(s.input_shape) - 1))
    return {"parameters": sum(r["parameters"] for r in records),
            "trainable_parameters": sum(r.get("trainable_parameters", r["parameters"]) for r in records),
            "macs": sum(r["macs"] for r in records), "cpu_latency_ms": float(sum(latencies)),
            "cpu_latency_threads": torch.get_num_threads(), "member_latency_ms": latencies}


def member_record(run: RunDir, spec: ModelSpec, metrics: dict) -> dict:
    return {"run": str(run.path), "backbone": spec.backbone, "cut": spec.cut, "image_size": spec.image_size,
            "strategy": metrics.get("strategy"), "seed": metrics.get("seed"), "parameters": metrics.get("parameters"),
            "val_auroc": metrics.get("val_auroc"), "test_auroc": metrics.get("test_auroc")}


def read_ensemble(directory: str | Path) -> tuple[list[Path], float | None]:
    """The member runs of an ensemble directory and its threshold, after checking that every member still holds the
    weights the ensemble was made of (a retrained or replaced member would silently change its predictions)."""
    directory = Path(directory)
    record = RunDir(directory).read_json(ENSEMBLE)
    members = [Path(p) for p in record.get("members", [])]
    for path, expected in zip(members, record.get("sha256", [])):
        if not (path / MODEL_WEIGHTS).is_file():
            raise ConfigError(f"{directory / ENSEMBLE} names the member {path}, which has no {MODEL_WEIGHTS} (moved "
                              "or deleted?); make the ensemble again with `medtl ensemble`.")
        if weights_sha256(path) != expected:
            raise ConfigError(f"the weights of member {path} changed since {directory} was made (SHA-256 differs); "
                              "make the ensemble again with `medtl ensemble`.")
    return members, record.get("threshold")
