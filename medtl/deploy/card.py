"""The model card (``MODEL_CARD.md``): what a model is, how it was made and measured, and what it is not for.

Written from the run's own records (``metrics.json``, ``model.json``, ``config.yaml``) by a pure function, so a
card can be regenerated for any run, old ones included; what an old run did not record is shown as such.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..rundir import RunDir

MODEL_CARD = RunDir.MODEL_CARD
UNKNOWN = "not recorded"


def model_card(run_dir: str | Path) -> str:
    """The Markdown model card of the run in ``run_dir``."""
    run_dir = Path(run_dir)
    metrics = _read(run_dir / RunDir.METRICS, json.loads)
    spec = _read(run_dir / RunDir.MODEL, json.loads)
    cfg = _read(run_dir / RunDir.CONFIG, yaml.safe_load)
    data = metrics.get("data", cfg.get("data", UNKNOWN))
    task = spec.get("task", "multiclass")
    classes = spec.get("classes") or []
    lines = [
        f"# Model card: {spec.get('backbone', UNKNOWN)} cut at `{spec.get('cut', UNKNOWN)}` on {data}",
        "",
        "Research use only; **not a medical device**. It has not been validated for clinical decisions.",
        "",
        "## Data",
        "",
        f"- Data set: {data} ({(metrics.get('data_source') or {}).get('kind', UNKNOWN)}); task: {task}",
        f"- Classes: {', '.join(f'`{c}`' for c in classes) or UNKNOWN}",
        *_counts(metrics.get("split_counts"), classes),
        "",
        "## Model",
        "",
        f"- Backbone: {spec.get('backbone', UNKNOWN)} ({spec.get('library', '?')}: {spec.get('arch', '?')}), "
        f"weights: {_weights(cfg, metrics)}",
        f"- Strategy: {metrics.get('strategy', cfg.get('strategy', UNKNOWN))}; cut: `{spec.get('cut', UNKNOWN)}` "
        f"(last kept layer); head: {spec.get('head', UNKNOWN)}",
        f"- Parameters kept: {_int(metrics.get('parameters'))} ({_int(metrics.get('trainable_parameters'))} trained); "
        f"MACs per image: {_int(metrics.get('macs'))}",
        f"- Stored per task beyond the shared pretrained weights: {_bytes(metrics.get('stored_bytes'))}",
        f"- CPU latency, batch 1: {_number(metrics.get('cpu_latency_ms'), '.2f', ' ms')} (median, "
        f"{metrics.get('cpu_latency_threads', '?')} thread(s), on the training machine)",
        "",
        "## Preprocessing",
        "",
        f"- Input: {spec.get('in_chans', '?')} channel(s); image files are resized to "
        f"{spec.get('read_size') or spec.get('image_size', '?')} px as the training data was stored, then to "
        f"{spec.get('image_size', '?')} × {spec.get('image_size', '?')} px (bilinear)",
        f"- Values scaled to [0, 1], normalised with mean {spec.get('mean')} and std {spec.get('std')}",
        "",
        "## Performance (test split, scored once)",
        "",
        *_performance(metrics),
        *_operating_point(metrics, spec, task),
        "",
        "## How it was selected",
        "",
        f"- Epoch {metrics.get('best_epoch', UNKNOWN)} of {metrics.get('epochs_run', UNKNOWN)}, chosen on the "
        f"**validation** split only (validation {cfg.get('select', 'auroc')}); "
        f"the test split was scored once, after the choice.",
        *_threshold_rule(metrics, task),
        f"- Seed {metrics.get('seed', cfg.get('seed', UNKNOWN))}; epochs {cfg.get('epochs', UNKNOWN)}, "
        f"batch {cfg.get('batch_size', UNKNOWN)}, lr {cfg.get('lr', UNKNOWN)}, augmentation "
        f"{'on' if cfg.get('augment', True) else 'off'}",
        f"- Software: medtl {_versions(metrics).get('medtl', UNKNOWN)}, "
        f"torch {_versions(metrics).get('torch', UNKNOWN)}",
        "",
        "## Intended use and known limits",
        "",
        "- Intended use: research on medical image classification; not a medical device, not for diagnosis.",
        f"- Trained on {data} only: images of another modality, body part, scanner or population are out of "
        "distribution, and its scores on them mean nothing until it is evaluated there (`medtl evaluate`).",
        f"- It sees {spec.get('image_size', '?')} px images (files are first resized to "
        f"{spec.get('read_size') or spec.get('image_size', '?')} px): detail finer than that is invisible to it; "
        "the aspect ratio is not kept.",
        "- Probabilities are not calibrated; the threshold was chosen on a validation split that may be small.",
        "",
    ]
    return "\n".join(lines)


def ensemble_card(directory: str | Path) -> str:
    """The Markdown model card of a ``medtl ensemble`` directory: its members, cost and test metrics."""
    directory = Path(directory)
    metrics = _read(directory / RunDir.METRICS, json.loads)
    members = metrics.get("member_runs") or []
    task = "binary" if "threshold" in metrics else "multiclass or multi-label"
    lines = [
        f"# Model card: ensemble of {len(members)} runs on {metrics.get('data', UNKNOWN)}",
        "",
        "Research use only; **not a medical device**. It has not been validated for clinical decisions.",
        "",
        "## Members",
        "",
        "The class probabilities of these runs are averaged (`medtl predict` runs each member on its own "
        "preprocessing and averages).",
        "",
        "| run | backbone | cut | image size | seed | parameters | validation AUROC |",
        "|---|---|---|---|---|---|---|",
        *(f"| `{Path(m['run']).name}` | {m.get('backbone')} | `{m.get('cut')}` | {m.get('image_size')} | "
          f"{m.get('seed')} | {_int(m.get('parameters'))} | {_number(m.get('val_auroc'), '.4f')} |" for m in members),
        "",
        f"- Parameters, all members: {_int(metrics.get('parameters'))}; MACs per image: {_int(metrics.get('macs'))}",
        f"- CPU latency, batch 1, members in turn: {_number(metrics.get('cpu_latency_ms'), '.2f', ' ms')} "
        f"({metrics.get('cpu_latency_threads', '?')} thread(s), measured when the ensemble was made)",
        "",
        "## Performance (test split)",
        "",
        *_performance(metrics),
        "",
        "## How it was selected",
        "",
        "- Each member chose its epoch on its validation split; the averaged validation probabilities chose the "
        "ensemble's temperature" + (" and decision threshold" if task == "binary" else "") + ". The test split "
        "chose nothing.",
        *_threshold_rule(metrics, "binary" if "threshold" in metrics else task),
        "- Which runs to combine is the user's choice: choose them on validation metrics, never on test ones.",
        "",
    ]
    return "\n".join(lines)


def _weights(cfg: dict, metrics: dict) -> str:
    source = metrics.get("weights_source")
    if not source:
        return str(cfg.get("weights", UNKNOWN))
    return (f"the trunk of the medtl run `{source['run']}` ({source.get('backbone')} cut at `{source.get('cut')}`, "
            f"trained on {source.get('data') or UNKNOWN}; model.safetensors SHA-256 `{source.get('sha256')}`)")


def _versions(metrics: dict) -> dict:
    return (metrics.get("provenance") or {}).get("versions") or metrics.get("versions") or {}


def _read(path: Path, parse) -> dict:
    return (parse(path.read_text()) or {}) if path.is_file() else {}


def _counts(counts: dict | None, classes: list[str]) -> list[str]:
    if not counts:
        return [f"- Images per split: {UNKNOWN}"]
    rows = ["", "| split | " + " | ".join(classes) + " | total |", "|---|" + "---|" * (len(classes) + 1)]
    for split, per_class in counts.items():
        if isinstance(per_class, dict):  # {class: images}
            per_class = [per_class.get(c, 0) for c in classes]
        rows.append(f"| {split} | " + " | ".join(f"{n:,}" for n in per_class) + f" | {sum(per_class):,} |")
    return rows


def _performance(metrics: dict) -> list[str]:
    """The test metrics table of a run's or an ensemble's card."""
    return ["| metric | value |", "|---|---|",
            *(f"| {name} | {_number(metrics.get(f'test_{key}'), '.4f')} |" for key, name in (
                ("auroc", "AUROC"), ("auprc", "AUPRC (average precision)"), ("accuracy", "accuracy (arg-max)"),
                ("balanced_accuracy", "balanced accuracy (arg-max)"), ("f1", "macro F1 (arg-max)")))]


def _operating_point(metrics: dict, spec: dict, task: str) -> list[str]:
    if task != "binary" or spec.get("threshold") is None:
        return []
    positive = (spec.get("classes") or ["0", "1"])[1]
    return [f"| {name} at threshold {spec['threshold']:.4f} (positive: `{positive}`) | "
            f"{_number(metrics.get(f'test_{key}'), '.4f')} |"
            for key, name in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "PPV"),
                              ("npv", "NPV"))]


def _threshold_rule(metrics: dict, task: str) -> list[str]:
    if task != "binary" or "threshold" not in metrics:
        return []
    return [f"- Decision threshold {metrics['threshold']:.4f} on P(positive), chosen on the **validation** split by "
            f"{metrics.get('threshold_rule', UNKNOWN)}; `medtl predict` applies it unless `--threshold` is given."]


def _bytes(value) -> str:
    return f"{value:,} bytes ({value / 1e6:.2f} MB)" if isinstance(value, int) else UNKNOWN


def _int(value) -> str:
    return f"{value:,}" if isinstance(value, int) else UNKNOWN


def _number(value, fmt: str, unit: str = "") -> str:
    return f"{value:{fmt}}{unit}" if isinstance(value, (int, float)) else UNKNOWN
