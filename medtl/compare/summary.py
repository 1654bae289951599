"""From the grid's runs to the paper's table: mean ± std per configuration, and the best block-level ("-1") and
layer-level ("-2") configuration of each strategy with a cut axis, chosen on validation metrics only."""
from __future__ import annotations

import statistics
from collections.abc import Iterable

from ..strategies import label_of

# Short names of the paper's table (Peng et al., BIMCV table) and of the strategies beyond it.
METRICS = ("test_auroc", "test_auprc", "test_accuracy", "val_auroc", "val_auprc", "latency_ms")
COSTS = ("parameters", "trainable_parameters", "macs", "stored_bytes")  # stored_bytes: per task, beyond shared weights


def summarise(records: Iterable[dict], metrics: tuple[str, ...] = METRICS, totals: tuple[str, ...] = ()) -> list[dict]:
    """One row per (strategy, cut): number of runs, mean and std of every metric, the model's costs, and the sum
    over the runs of each of ``totals`` (e.g. the training time a configuration took).

    ``records`` are the runs' ``metrics.json`` plus ``strategy``, ``cut`` (the cut axis, None for none), ``level``
    and (for the default ``metrics``) ``latency_ms``; the standard deviation is the sample one (0 for one run)."""
    groups: dict[tuple[str, str | None], list[dict]] = {}
    for r in records:
        groups.setdefault((r["strategy"], r["cut"]), []).append(r)
    rows = []
    for (strategy, cut), runs in groups.items():
        row = {"strategy": strategy, "cut": cut, "level": runs[0]["level"], "runs": len(runs)}
        for key in metrics:
            values = [r[key] for r in runs]
            row[f"{key}_mean"] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row.update({key: runs[0].get(key) for key in COSTS})  # runs from before stored_bytes existed: None
        row.update({key: sum(r[key] for r in runs) for key in totals})
        rows.append(row)
    return rows


def best_on_validation(rows: list[dict], select: str = "auprc") -> dict:
    """The row with the highest mean validation ``select``; ties go to the other of AUROC/AUPRC, then to the smaller
    model. The one selection rule of the paper's table and of ``medtl search``: test metrics are never looked at."""
    other = "auroc" if select == "auprc" else "auprc"
    return max(rows, key=lambda r: (r[f"val_{select}_mean"], r[f"val_{other}_mean"], -r["parameters"]))


def paper_rows(rows: list[dict], select: str = "auprc") -> list[dict]:
    """The paper's table: one row per strategy without a cut axis, and for each strategy with one its best
    block-level configuration ("-1") and its best over every cut in the grid ("-2", the layer-level search, only
    when the grid has layer-level cuts). "Best" is the highest mean *validation* ``select`` (ties: the other of
    AUROC/AUPRC); the test metrics are never looked at."""
    table = []
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        own = [r for r in rows if r["strategy"] == strategy]
        name = label_of(strategy)
        if own[0]["cut"] is None:
            table.append({"method": name, **own[0]})
            continue
        blocks = [r for r in own if r["level"] == "block"]
        if blocks:
            table.append({"method": f"{name}-1", **best_on_validation(blocks, select)})
        if any(r["level"] != "block" for r in own):
            table.append({"method": f"{name}-2", **best_on_validation(own, select)})
    return table


def markdown(rows: list[dict], first: str, select: str = "auprc") -> str:
    """A Markdown table of ``rows``; ``first`` is the leading column (``method`` or ``strategy``), ``select`` the
    validation metric shown (the one configurations were chosen on)."""
    head = [first] + (["cut"] if first == "method" else ["cut", "runs"]) + [
        "AUROC", "AUPRC", "accuracy", f"val {select.upper()}", "trainable P (M)", "P (M)", "stored/task (MB)",
        "MACs (M)", "T (ms)"]
    tested = any("p_vs_full" in r for r in rows)  # the paired DeLong test against FTL (compare/significance.py)
    versus_ttl = any("p_vs_truncated" in r for r in rows)  # and against TTL-1
    head += (["p vs FTL"] if tested else []) + (["p vs TTL"] if versus_ttl else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[first]), r["cut"] or "–"] + ([] if first == "method" else [str(r["runs"])]) + [
            _pm(r, "test_auroc"), _pm(r, "test_auprc"), _pm(r, "test_accuracy"), _pm(r, f"val_{select}"),
            f"{r['trainable_parameters'] / 1e6:.3f}", f"{r['parameters'] / 1e6:.3f}", _mb(r.get("stored_bytes")),
            f"{r['macs'] / 1e6:.1f}",
            f"{r['latency_ms_mean']:.2f}"] + ([_p(r.get("p_vs_full"))] if tested else []) + (
            [_p(r.get("p_vs_truncated"))] if versus_ttl else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.3f}"


def _p(p: float | None) -> str:
    return "–" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def _pm(row: dict, key: str) -> str:
    return f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}"
