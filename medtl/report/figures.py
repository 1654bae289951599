"""The report's figures, drawn with matplotlib (Agg) and returned as ``data:image/png;base64`` URIs, so that the page
is one file that needs nothing else to be viewed."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_curve,
)

from ..compare.plots import plot_cuts
from ..optional import require
from ..plotting import pyplot
from ..strategies import colour_of, label_of

STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "axes.spines.top": False,
         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110, "savefig.dpi": 110}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def embed(path: Path) -> str:
    """A PNG written by another command (``reuse.png``, ``gradcam.png``), inline."""
    return data_uri(Path(path).read_bytes())


@contextmanager
def canvas(*args, **kwargs):
    """A styled figure whose PNG data URI is left in the yielded holder's ``uri`` once the block ends."""
    plt = pyplot("the report's figures")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(*args, **kwargs)
        holder = _Holder(fig, axes)
        try:
            yield holder
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            holder.uri = data_uri(buffer.getvalue())
        finally:
            plt.close(fig)


@dataclass
class _Holder:
    fig: object
    axes: object
    uri: str = ""


@dataclass
class Curve:
    """One ROC/PR curve: 0/1 ``targets`` and ``scores``; curves of one ``group`` share a colour (``colour``, else
    the next of the cycle) and a legend entry."""

    group: str
    targets: np.ndarray
    scores: np.ndarray
    colour: str | None = None


def roc_pr(curves: Sequence[Curve]) -> str:
    """ROC and precision-recall curves side by side; the legend gives each group's mean AUROC / AUPRC (± std over
    its curves, e.g. seeds)."""
    groups = list(dict.fromkeys(c.group for c in curves))
    with canvas(1, 2, figsize=(9.6, 4.2)) as f:
        roc_ax, pr_ax = f.axes
        used: list = []
        for group, cycled in zip(groups, _colours(len(groups))):
            own = [c for c in curves if c.group == group]
            shade = own[0].colour or cycled
            style = "--" if shade in used else "-"  # e.g. TTL-2 after TTL-1: the same strategy, dashed
            used.append(shade)
            rocs, prs = [], []
            for i, c in enumerate(own):
                fpr, tpr, _ = roc_curve(c.targets, c.scores)
                precision, recall, _ = precision_recall_curve(c.targets, c.scores)
                rocs.append(auc(fpr, tpr))
                prs.append(average_precision_score(c.targets, c.scores))
                width, alpha = (1.8, 1.0) if len(own) == 1 else (1.2, 0.7)
                roc_ax.plot(fpr, tpr, color=shade, linestyle=style, linewidth=width, alpha=alpha,
                            label=f"{group} ({_pm(rocs)})" if i == len(own) - 1 else None)
                pr_ax.step(recall, precision, where="post", color=shade, linestyle=style, linewidth=width,
                           alpha=alpha, label=f"{group} ({_pm(prs)})" if i == len(own) - 1 else None)
        roc_ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        if len(groups) == 1 and len(curves) == 1:
            prevalence = float(np.mean(curves[0].targets))
            pr_ax.axhline(prevalence, linestyle="--", color="0.6", linewidth=1, label=f"chance ({prevalence:.2f})")
        roc_ax.set(xlabel="false positive rate (1 − specificity)", ylabel="true positive rate (sensitivity)",
                   title="ROC", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
        pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision–recall", xlim=(-0.01, 1.01),
                  ylim=(-0.01, 1.01))
        roc_ax.legend(title="AUROC", loc="lower right")
        pr_ax.legend(title="AUPRC (average precision)", loc="lower left")
    return f.uri


def _pm(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}, {len(values)} runs"


def _colours(n: int) -> list:
    plt = pyplot("the report's figures")
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def confusion(matrix: np.ndarray, classes: list[str], title: str = "Confusion matrix (test)") -> str:
    """Counts, with each row's share (sensitivity on the diagonal) below; colour = row share."""
    k = len(classes)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = min(8.0, 2.6 + 0.55 * k)
    with canvas(figsize=(size + 0.8, size)) as f:
        ax = f.axes
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.grid(False)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                        fontsize=9 if k < 6 else 7, color="white" if share[i, j] > 0.55 else "0.1")
        names = [_wrap(c) for c in classes]
        ax.set_xticks(range(k), names, rotation=0 if k < 4 else 45, ha="center" if k < 4 else "right")
        ax.set_yticks(range(k), names)
        ax.set(xlabel="predicted class", ylabel="true class", title=title)
        f.fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return f.uri


def _wrap(name: str, width: int = 10) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(name, width)) or name


def reliability(bins: list[dict], ece: float, multilabel: bool = False) -> str:
    """Accuracy against confidence per bin (a calibrated model lies on the diagonal) over a histogram of the
    confidences; the gap bars show where it is over- or under-confident."""
    with canvas(2, 1, figsize=(4.8, 5.0), gridspec_kw={"height_ratios": [3, 1]}, sharex=True) as f:
        ax, hist = f.axes
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
        ax.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, color="#4c72b0", alpha=0.85,
               label="accuracy in bin")
        ax.bar(centres, [b["confidence"] - b["accuracy"] for b in bins], bottom=[b["accuracy"] for b in bins],
               width=width * 0.9, fill=False, hatch="///", edgecolor="#c44e52", linewidth=0.8,
               label="gap to mean confidence")
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect calibration")
        ax.set(ylabel="fraction positive" if multilabel else "accuracy", ylim=(0, 1.02), xlim=(0, 1),
               title=f"Reliability (top-label ECE {ece:.3f}, {len(bins)} non-empty bins)")
        ax.legend(loc="upper left")
        hist.bar(centres, [b["count"] for b in bins], width=width * 0.9, color="0.55")
        hist.set(xlabel="predicted probability" if multilabel else "confidence in the predicted class",
                 ylabel="images")
    return f.uri


def history(rows: list[dict], best_epoch: int | None) -> str:
    """Train and validation loss, the validation metrics and the learning rate per epoch; the selected epoch
    marked."""
    epochs = [r["epoch"] for r in rows]
    metrics = [k for k in ("val_auroc", "val_auprc", "val_accuracy") if k in rows[0]]
    with canvas(1, 3, figsize=(11.5, 3.4)) as f:
        loss, quality, lr = f.axes
        for key, label in (("train_loss", "train"), ("val_loss", "validation")):
            if key in rows[0]:
                loss.plot(epochs, [r[key] for r in rows], marker=".", label=label)
        for key in metrics:
            quality.plot(epochs, [r[key] for r in rows], marker=".", label=key[4:].upper())
        if "lr" in rows[0]:
            lr.plot(epochs, [r["lr"] for r in rows], color="0.3")
        for ax, title in zip(f.axes, ("loss", "validation metrics", "learning rate")):
            if best_epoch is not None:
                ax.axvline(best_epoch, color="tab:red", linestyle=":", linewidth=1.2,
                           label="selected epoch" if ax is not lr else None)
            ax.set(xlabel="epoch", title=title)
        loss.legend(loc="best")
        quality.legend(loc="best")
    return f.uri


def tradeoff(rows: list[dict], table: list[dict]) -> str:
    """Test AUROC (mean ± std over repeats) against trainable parameters, MACs and CPU latency, one point per
    configuration, coloured by strategy; the rows of the paper's table are labelled."""
    axes_keys = [("trainable_parameters", "trainable parameters (M)", 1e6), ("macs", "MACs (M)", 1e6),
                 ("latency_ms_mean", "CPU latency per image (ms)", None)]
    axes_keys = [a for a in axes_keys if all(r.get(a[0]) is not None for r in rows)]
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    labelled = {(t["strategy"], t["cut"]): t["method"] for t in table}
    with canvas(1, len(axes_keys), figsize=(4.0 * len(axes_keys), 3.9), squeeze=False, sharey=True) as f:
        for ax, (key, label, unit) in zip(f.axes[0], axes_keys):
            for strategy in strategies:
                own = [r for r in rows if r["strategy"] == strategy]
                xs = [r[key] / (unit or 1) for r in own]
                ax.errorbar(xs, [r["test_auroc_mean"] for r in own], yerr=[r["test_auroc_std"] for r in own],
                            fmt="o", color=colour_of(strategy), markersize=4.5, capsize=2, linewidth=1,
                            label=label_of(strategy))
                for x, r in zip(xs, own):
                    if (r["strategy"], r["cut"]) in labelled:
                        ax.annotate(labelled[(r["strategy"], r["cut"])], (x, r["test_auroc_mean"]),
                                    textcoords="offset points", xytext=(4, 4), fontsize=7.5)
            if unit:  # counts span orders of magnitude between shallow cuts and the full model
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(_plain())
                ax.xaxis.set_minor_formatter(_plain(minor=True))
            ax.set(xlabel=label)
        f.axes[0][0].set_ylabel("test AUROC")
        f.axes[0][-1].legend(loc="lower right", fontsize=7.5)
    return f.uri


def _plain(minor: bool = False):
    """Log-axis tick labels as plain numbers (0.1, 1, 10), not powers of ten; minor ticks are labelled only where
    the axis spans less than a decade (matplotlib's rule), else they would crowd."""
    LogFormatter = require("matplotlib.ticker", extra="plot", purpose="the report's figures").LogFormatter

    class Plain(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    return Plain(labelOnlyBase=not minor)


def cut_curve(rows: list[dict], order: list[str]) -> str:
    """The comparison's figure against the cut point (:func:`medtl.compare.plots.plot_cuts`), inline."""
    buffer = io.BytesIO()
    plot_cuts(rows, order, buffer)
    return data_uri(buffer.getvalue())
