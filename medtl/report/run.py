"""The report of one training run: what was run, on what data, how it scored, how it trained."""
from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..rundir import RunDir
from . import figures
from .blocks import (
    cards,
    figure,
    fmt,
    note,
    pairs,
    pre,
    read_json,
    read_rows,
    row,
    section,
    table,
)
from .predictions import PREDICTIONS, Predictions, read_predictions

METRICS = RunDir.METRICS
SPLITS = ("train", "val", "test")
# Metric suffixes in the order a reader looks for them; others follow alphabetically.
ORDER = ("auroc", "auprc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity", "ece", "loss",
         "auprc_trapz")
SHOWN = {"data_source", "provenance"}  # rendered in their own sections
PROVENANCE = ("format_version", "command", "argv", "versions", "medtl_version", "torch_version", "timm_version",
              "python", "git_commit", "commit", "machine", "platform", "hostname", "device", "started", "finished")


def run_page(run: Path) -> dict:
    metrics = read_json(run / METRICS)
    spec = read_json(run / RunDir.MODEL) if (run / RunDir.MODEL).is_file() else {}
    predictions = read_predictions(run / PREDICTIONS, spec.get("classes") or None) \
        if (run / PREDICTIONS).is_file() else None
    title = (f"{metrics.get('data', '?')} · {metrics.get('backbone', '?')} · {metrics.get('strategy', '?')} "
             f"at {metrics.get('cut', '?')} · seed {metrics.get('seed', '?')}")
    sections = [
        section("Summary", headline(metrics), *metric_tables(metrics)),
        section("Test predictions", *prediction_blocks(predictions, metrics)),
        section("Training", *training_blocks(run, metrics)),
        section("Data", *data_blocks(metrics, predictions)),
        section("Analyses", *analysis_blocks(run)),
        section("Provenance", *provenance_blocks(run, metrics)),
    ]
    return {"title": title, "kind": "run", "subtitle": str(run.resolve()), "sections": [s for s in sections if
                                                                                         s["blocks"]]}


def headline(metrics: dict) -> dict:
    items = []
    for key, label in (("test_auroc", "test AUROC"), ("test_auprc", "test AUPRC"), ("test_accuracy", "accuracy"),
                       ("test_balanced_accuracy", "balanced accuracy")):
        if isinstance(metrics.get(key), (int, float)):
            ci = metrics.get(f"{key}_ci")
            items.append((label, f"{metrics[key]:.3f}", f"95% CI {fmt(ci, 3)}" if ci else None))
    if "parameters" in metrics:
        trainable = metrics.get("trainable_parameters")
        items.append(("parameters", f"{metrics['parameters'] / 1e6:.3f} M",
                      f"{trainable / 1e6:.3f} M trainable" if trainable is not None else None))
    if "macs" in metrics:
        items.append(("MACs", f"{metrics['macs'] / 1e6:.1f} M", None))
    if isinstance(metrics.get("stored_bytes"), int):
        items.append(("stored per task", f"{metrics['stored_bytes'] / 1e6:.3f} MB", "beyond the shared pretrained "
                      "weights"))
    if "best_epoch" in metrics:
        items.append(("selected epoch", str(metrics["best_epoch"]), f"of {metrics.get('epochs_run', '?')} run, on "
                      "validation"))
    return cards(items)


def metric_tables(metrics: dict) -> list[dict | None]:
    """Every test/validation metric side by side with its confidence interval where recorded, then the other
    recorded values (whatever newer versions of medtl add is shown, not dropped)."""
    names = {k.split("_", 1)[1] for k, v in metrics.items()
             if k.startswith(("test_", "val_")) and not k.endswith("_ci") and _number(v)}
    names = sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    with_ci = any(k.endswith("_ci") for k in metrics)  # runs written before CIs were recorded have none
    columns = [("test", "test_{}"), ("test 95% CI", "test_{}_ci"), ("validation (selected epoch)", "val_{}"),
               ("validation 95% CI", "val_{}_ci")]
    columns = [c for c in columns if with_ci or not c[1].endswith("_ci")]
    rows = [[name.replace("_", " ")] + [fmt(metrics.get(key.format(name))) for _, key in columns] for name in names]
    keys = [[None] + [key.format(name) for _, key in columns] for name in names]
    used = {f"{split}_{n}{ci}" for split in ("test", "val") for n in names for ci in ("", "_ci")}
    rest = {k: v for k, v in metrics.items() if k not in used and k not in SHOWN and k not in PROVENANCE}
    scalars = [(k.replace("_", " "), v) for k, v in rest.items() if not isinstance(v, (dict, list))]
    nested = {k: v for k, v in rest.items() if isinstance(v, (dict, list))}
    blocks = [table(["metric"] + [header for header, _ in columns], rows,
                    caption="Test: scored once, at the end. Validation: the epoch chosen on it.", keys=keys),
              pairs(scalars, caption="Run")]
    if nested:
        import json

        blocks.append(pre(json.dumps(nested, indent=2), "further recorded values (metrics.json)"))
    return blocks


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def prediction_blocks(p: Predictions | None, metrics: dict) -> list[dict | None]:
    if p is None:
        return [note(f"No {PREDICTIONS} in this run: curves and the confusion matrix cannot be drawn.")]
    curves = [figures.Curve(name, t, s) for name, t, s in p.one_vs_rest() if 0 < t.sum() < len(t)]
    bins, ece = p.calibration()
    matrix = p.confusion()
    confusion = figure(figures.confusion(matrix, p.classes), "Rows: true class; columns: predicted class "
                       "(medmnist's rule: binary p > 0.5, else the most probable class).", "confusion matrix",
                       size="half") if matrix is not None else None
    at_threshold = threshold_confusion(p, metrics)
    return [
        figure(figures.roc_pr(curves), "ROC and precision–recall curves on the test split"
               + (" (the positive class)." if p.binary else ", one class against the rest."), "ROC and PR curves"),
        row(confusion, at_threshold, figure(figures.reliability(bins, ece, p.multilabel),
                                            "Bars on the diagonal: calibrated. Top-label ECE: the count-weighted mean "
                                            "gap of the predicted class's confidence; metrics.json's test_ece is the "
                                            "one-vs-rest ECE of the class probabilities (15 bins).",
                                            "reliability diagram", size="half")),
        per_class_table(p),
    ]


def threshold_confusion(p: Predictions, metrics: dict) -> dict | None:
    """For a binary run that recorded a decision threshold (chosen on validation), the test confusion matrix at it."""
    key = next((k for k, v in metrics.items() if "threshold" in k and _number(v) and 0 < v < 1), None)
    if key is None or not p.binary:
        return None
    threshold = float(metrics[key])
    predicted = (p.probs[:, 1] >= threshold).astype(int)
    matrix = np.bincount(p.labels * 2 + predicted, minlength=4).reshape(2, 2)
    return figure(figures.confusion(matrix, p.classes, f"At the threshold {threshold:.3f} ({key})"),
                  f"Predicted {p.classes[1]} when its probability ≥ {threshold:.3f}.", "confusion at threshold",
                  size="half")


def per_class_table(p: Predictions) -> dict:
    header = ["class", "test images", "precision", "sensitivity", "specificity", "F1", "AUROC", "AUPRC"]
    rows = [[r["class"], fmt(r["support"]), *(fmt(r[k], 3) for k in ("precision", "sensitivity", "specificity", "f1",
                                                                       "auroc", "auprc"))] for r in p.per_class()]
    return table(header, rows, caption="Per class, one against the rest, at the stored predictions.")


def training_blocks(run: Path, metrics: dict) -> list[dict | None]:
    path = run / RunDir.HISTORY
    if not path.is_file() or not read_rows(path):
        return [note("No history.csv in this run.")]
    return [figure(figures.history(read_rows(path), metrics.get("best_epoch")),
                   "Per epoch; the dotted line is the epoch selected on validation.", "training curves")]


def split_counts(metrics: dict, classes: list[str]) -> dict[str, list]:
    """Images per class and split from any ``metrics.json`` entry of the form ``{split: counts}`` (counts a list in
    class order, a ``{class: n}`` dict, or a total)."""
    for key, value in metrics.items():
        if key in SHOWN or not isinstance(value, dict) or not set(value) & set(SPLITS):
            continue
        found = {}
        for split in SPLITS:
            counts = value.get(split)
            if isinstance(counts, dict):
                found[split] = [counts.get(c) for c in classes]
            elif isinstance(counts, list) and len(counts) == len(classes):
                found[split] = counts
            elif _number(counts):
                found[split] = [None] * len(classes) + [counts]
        if found:
            return found
    return {}


def data_blocks(metrics: dict, p: Predictions | None) -> list[dict | None]:
    classes = p.classes if p else []
    counts = split_counts(metrics, classes)
    if p is not None:
        counts.setdefault("test", p.counts())
    rows = []
    for i, name in enumerate(classes):
        rows.append([name] + [fmt(counts[s][i]) if s in counts and counts[s][i] is not None else "–" for s in SPLITS])
    totals = ["total"]
    for s in SPLITS:
        values = counts.get(s, [])
        known = [v for v in values[:len(classes)] if v is not None]
        total = values[-1] if len(values) > len(classes) else (sum(known) if known else None)
        totals.append(fmt(total))
    source = metrics.get("data_source") or {}
    blocks = [table(["class", "train", "validation", "test"], rows + [totals] if rows else [],
                    caption="Images per class and split (test: from the predictions; train and validation when the "
                            "run recorded them).") if rows else None,
              pairs([("data", metrics.get("data")), *[(k, v) for k, v in source.items() if k != "citation"]],
                    caption="Source"),
              note(f"Cite: {source['citation']}") if source.get("citation") else None]
    return blocks


def analysis_blocks(directory: Path) -> list[dict | None]:
    """Figures written next to the run by ``medtl analyze reuse`` and ``medtl explain``, inline."""
    shown = []
    for name, caption in (("reuse.png", "Feature reuse (medtl analyze reuse): SVCCA and CKA of pretrained vs "
                                        "fine-tuned features at every cut."),
                          ("gradcam.png", "Grad-CAM (medtl explain) at each model's cut.")):
        if (directory / name).is_file():
            shown.append(figure(figures.embed(directory / name), caption, name, size="natural"))
    return shown


def provenance_blocks(run: Path, metrics: dict) -> list[dict | None]:
    recorded = dict(metrics.get("provenance") or {})
    recorded |= {k: metrics[k] for k in PROVENANCE if k in metrics}
    flat = []
    for key, value in recorded.items():
        if isinstance(value, dict):
            flat += [(f"{key} {k}", v) for k, v in value.items()]
        else:
            flat.append((key, " ".join(value) if key in ("command", "argv") and isinstance(value, list) else value))
    config = run / RunDir.CONFIG
    return [
        pairs([("run directory", str(run.resolve())), ("seed", metrics.get("seed")), *flat], caption="Recorded by "
              "the run" + ("" if flat else " (this run predates provenance records: versions, command and commit "
                                           "were not saved)")),
        pairs(report_environment(), caption="This report was written with"),
        pre(config.read_text(), "config.yaml (re-run with medtl train --config)", open_=False)
        if config.is_file() else None,
    ]


def report_environment() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:  # the package's metadata: importing timm would take seconds
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return [("written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")), ("medtl", __version__),
            ("torch", installed("torch")), ("timm", installed("timm")), ("python", platform.python_version()),
            ("machine", f"{platform.node()} ({platform.platform(terse=True)}, {platform.machine()})")]
