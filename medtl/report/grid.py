"""The reports of a ``medtl compare`` grid and of a ``medtl search``: the paper's table, the trade-off between
AUROC and cost, the curve against the cut point, per-seed ROC/PR curves, and the analyses that have been run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compare.grid import cut_points
from ..compare.summary import METRICS
from ..rundir import GridDir, RunDir, SearchDir
from ..strategies import colour_of, label_of
from . import figures
from .blocks import (
    figure,
    fmt,
    links,
    millions,
    pairs,
    pm,
    read_json,
    read_rows,
    section,
    table,
)
from .predictions import PREDICTIONS, read_predictions
from .run import analysis_blocks, data_blocks, provenance_blocks

KNOWN = {"method", "strategy", "cut", "level", "runs", "stage", "picked", "parameters", "trainable_parameters", "macs",
         "epochs_run", "train_seconds"} | {f"{m}_{s}" for m in METRICS for s in ("mean", "std")}


def summary_table(rows: list[dict], first: str, caption: str, picked: str | None = None) -> dict:
    """The paper's table (``first`` = ``method``), one row per configuration (``strategy``) or a search's
    candidates (``stage``, the ``picked`` cut highlighted); columns a newer medtl adds (e.g. ``p_vs_full``) are
    shown after the known ones."""
    extra = [k for k in rows[0] if k not in KNOWN] if rows else []
    header = [first.replace("_", " "), "cut", "runs", "test AUROC", "test AUPRC", "accuracy", "val AUROC", "val AUPRC",
              "trainable P (M)", "P (M)", "MACs (M)", "T (ms)"] + [k.replace("_", " ") for k in extra]
    body, keys = [], []
    for r in rows:
        name = r[first] if first != "strategy" else label_of(r["strategy"])
        body.append([name, r.get("cut") or "–", fmt(r.get("runs")), pm(r, "test_auroc"), pm(r, "test_auprc"),
                     pm(r, "test_accuracy"), pm(r, "val_auroc"), pm(r, "val_auprc"),
                     millions(r.get("trainable_parameters")), millions(r.get("parameters")),
                     millions(r.get("macs"), 1), pm(r, "latency_ms", 2)] + [fmt(r[k]) for k in extra])
        keys.append([None, None, None, "test_auroc", "test_auprc", "test_accuracy", "val_auroc", "val_auprc", None,
                     None, None, None] + extra)
    highlight = [picked is not None and r["cut"] == picked for r in rows]
    return table(header, body, caption=caption, keys=keys, highlight=highlight)


def cut_figure(rows: list[dict], backbone: str | None, caption: str) -> dict | None:
    """The curve against the cut point (TTL, LWFT, TF), in the backbone's order of cuts."""
    if backbone is None or not any(r.get("cut") for r in rows):
        return None
    order = [c for c, _ in cut_points(backbone, "all")]
    return figure(figures.cut_curve([r for r in rows if r.get("cut") in order or r.get("cut") is None], order),
                  caption, "metrics against the cut point", size="natural")


def seed_curves(directory: Path, table_rows: list[dict], records: list[dict]) -> dict | None:
    """ROC and PR curves of every run of each row of the paper's table, one colour per row, one line per seed
    (multi-class: micro-averaged one against the rest)."""
    curves = []
    for t in table_rows:
        for r in records:
            path = directory / GridDir.RUN_DIRS / r["run"] / PREDICTIONS
            if (r["strategy"], r["cut"]) == (t["strategy"], t["cut"]) and path.is_file():
                pairs_ = read_predictions(path).one_vs_rest()
                targets = np.concatenate([p[1] for p in pairs_])
                scores = np.concatenate([p[2] for p in pairs_])
                curves.append(figures.Curve(t["method"], targets, scores, colour_of(t["strategy"])))
    if not curves:
        return None
    return figure(figures.roc_pr(curves), "Test ROC and precision–recall curves, one line per seed (repeat) of each "
                  "row of the table.", "ROC and PR curves per seed")


def run_dirs(directory: Path) -> list[Path]:
    runs = directory / GridDir.RUN_DIRS
    return sorted(p for p in runs.iterdir() if (p / RunDir.METRICS).is_file()) if runs.is_dir() else []


def gallery(directory: Path, name: str) -> list[dict]:
    """``name`` (``reuse.png``, ``gradcam.png``) wherever it was written: in the grid directory or in a run's."""
    found = []
    for path in [directory / name, *sorted((directory / GridDir.RUN_DIRS).glob(f"*/{name}"))]:
        if path.is_file():
            found.append(figure(figures.embed(path), f"{path.parent.name}/{name}", name, size="natural"))
    return found


def shared_sections(directory: Path) -> list[dict]:
    """Data and provenance of the first finished run (every run of a grid shares the data)."""
    runs = run_dirs(directory)
    if not runs:
        return []
    metrics = read_json(runs[0] / RunDir.METRICS)
    predictions = read_predictions(runs[0] / PREDICTIONS) if (runs[0] / PREDICTIONS).is_file() else None
    return [section("Data", *data_blocks(metrics, predictions)),
            section("Provenance (first run)", *provenance_blocks(runs[0], metrics))]


def run_links(directory: Path) -> dict | None:
    return links([(p.name, f"{GridDir.RUN_DIRS}/{p.name}/{RunDir.REPORT}") for p in run_dirs(directory)
                  if (p / RunDir.REPORT).is_file()])


def grid_page(directory: Path) -> dict:
    records = read_rows(directory / GridDir.RUNS)
    rows = read_rows(directory / GridDir.CONFIGURATIONS)
    paper = read_rows(directory / GridDir.TABLE)
    first = run_dirs(directory)
    backbone = read_json(first[0] / RunDir.METRICS).get("backbone") if first else None
    data = read_json(first[0] / RunDir.METRICS).get("data", "?") if first else "?"
    repeats = max((r["runs"] for r in rows), default=0)
    sections = [
        section("The table", summary_table(paper, "method", "The paper's rows: -1 the best block-level configuration, "
                                           "-2 the best over every cut, both chosen on mean validation metrics only; "
                                           "mean ± std over the repeats.")),
        section("Accuracy against cost", figure(figures.tradeoff(rows, paper), "Test AUROC (mean ± std) of every "
                                                "configuration against its trainable parameters, MACs and CPU latency "
                                                "(batch 1, one thread); the table's rows are labelled.",
                                                "AUROC against cost")),
        section("Against the cut point", cut_figure(rows, backbone, "Test AUROC/AUPRC against the cut point (mean ± "
                                                    "std band), FTL and linear probing as lines, trainable parameters "
                                                    "as bars.")),
        section("ROC and PR curves", seed_curves(directory, paper, records)),
        section("Every configuration", summary_table(rows, "strategy", "One row per strategy and cut point.")),
        section("Feature reuse (SVCCA)", *gallery(directory, "reuse.png")),
        section("Grad-CAM", *gallery(directory, "gradcam.png")),
        section("Runs", run_links(directory), pairs([("runs", len(records)), ("repeats", repeats)])),
        *shared_sections(directory),
    ]
    return {"title": f"Comparison · {data} · {backbone}", "kind": "grid", "subtitle": str(directory.resolve()),
            "sections": [s for s in sections if s["blocks"]]}


def how_searched(result: dict) -> list[tuple[str, object]]:
    """What the search fine-tuned before its pick: a shortlist of the estimate, or the two stages."""
    if result.get("shortlist"):
        return [("fine-tuned", f"the --cut auto estimate's {len(result['shortlist'])} best-ranked cuts: "
                               + ", ".join(result["shortlist"]))]
    return [("stage 1 (blocks) picked", result.get("block_pick")),
            ("stage 2 searched", ", ".join(result.get("stage_two") or []) or "–")]


def search_page(directory: Path) -> dict:
    rows = read_rows(directory / SearchDir.CSV)
    trained = [r for r in rows if r.get("test_auroc_mean") is not None]  # successive halving stops some cuts early
    result = read_json(directory / SearchDir.JSON)
    config = result.get("config") or {}
    cost = result.get("cost") or {}
    caption = (f"Every candidate cut; chosen on mean {result.get('select', 'validation')} over seeds "
               f"{result.get('seeds')}, test metrics recorded only. Highlighted: the pick.")
    sections = [
        section("The pick", pairs([*how_searched(result), ("the search picked", result.get("pick")),
                                   *[(k.replace("_", " "), v) for k, v in cost.items()]])),
        section("Candidates", summary_table(rows, "stage", caption, picked=result.get("pick"))),
        section("Against the cut point", cut_figure(trained, config.get("backbone"), "Test AUROC/AUPRC of "
                                                    "TruncatedTL at every candidate cut (mean ± std band), trainable "
                                                    "parameters as bars.")),
        section("Runs", run_links(directory)),
        section("Analyses", *analysis_blocks(directory)),
        *shared_sections(directory),
    ]
    return {"title": f"Search for the cut · {config.get('data', '?')} · {config.get('backbone', '?')}",
            "kind": "search", "subtitle": str(directory.resolve()), "sections": [s for s in sections if s["blocks"]]}
