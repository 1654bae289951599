"""The comparison's figures (matplotlib, the optional ``plot`` extra: see :mod:`medtl.plotting`)."""
from __future__ import annotations

from pathlib import Path

from ..plotting import pyplot
from ..strategies import STRATEGIES, colour_of, label_of

CUT_STRATEGIES = tuple(name for name, entry in STRATEGIES.items() if entry.cut_option)  # curves against the cut
REFERENCES = ("full", "linear")  # drawn as horizontal lines


def plot_cuts(rows: list[dict], cut_order: list[str], path: Path) -> Path:
    """Test AUROC and AUPRC against the cut point for TTL, LWFT and TF (mean ± std band over the repeats), FTL and
    linear probing as dashed lines, and each configuration's trainable parameters as bars."""
    plt = pyplot("the comparison figures (the tables are written without them)")
    curves = [s for s in CUT_STRATEGIES if any(r["strategy"] == s for r in rows)]
    cuts = [c for c in cut_order if any(r["cut"] == c for r in rows if r["strategy"] in curves)]
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 0.8 * len(cuts) + 2), 7.5), sharex=True)
    width = 0.8 / max(1, len(curves))
    for ax, metric in zip(axes, ("auroc", "auprc")):
        bars = ax.twinx()
        for i, strategy in enumerate(curves):
            own = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: cuts.index(r["cut"]))
            xs = [cuts.index(r["cut"]) for r in own]
            mean = [r[f"test_{metric}_mean"] for r in own]
            std = [r[f"test_{metric}_std"] for r in own]
            (line,) = ax.plot(xs, mean, marker="o", color=colour_of(strategy), label=label_of(strategy))
            ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.2)
            bars.bar([x + (i - (len(curves) - 1) / 2) * width for x in xs],
                     [r["trainable_parameters"] / 1e6 for r in own], width, color=line.get_color(), alpha=0.18)
        for strategy, style in zip(REFERENCES, ("--", ":")):
            ref = next((r for r in rows if r["strategy"] == strategy), None)
            if ref is not None:
                ax.axhline(ref[f"test_{metric}_mean"], color="0.3", linestyle=style, label=label_of(strategy))
        ax.set_ylabel(f"test {metric.upper()}")
        bars.set_yscale("log")
        bars.set_ylabel("trainable parameters (M, log), bars")
        ax.set_zorder(bars.get_zorder() + 1)  # lines above the bars
        ax.patch.set_visible(False)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize="small", frameon=False)
    axes[1].set_xticks(range(len(cuts)), cuts, rotation=45, ha="right")
    axes[1].set_xlabel("cut point (TTL: last kept layer; LWFT: last frozen; TF: last pretrained before slimming)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_boxes(table: list[dict], records: list[dict], path: Path) -> Path:
    """Box plots of test AUROC and AUPRC over the repeats, one box per row of the paper's table."""
    plt = pyplot("the comparison figures (the tables are written without them)")
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.9 * len(table) + 3), 4.5))
    for ax, metric in zip(axes, ("auroc", "auprc")):
        values = [[r[f"test_{metric}"] for r in records if (r["strategy"], r["cut"]) == (row["strategy"], row["cut"])]
                  for row in table]
        ax.boxplot(values)
        ax.set_xticks(range(1, len(table) + 1), [row["method"] for row in table], rotation=45, ha="right")
        ax.set_ylabel(f"test {metric.upper()}")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
