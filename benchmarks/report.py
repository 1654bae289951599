"""Results as Markdown tables (the format of benchmarks/README.md) and as JSON."""
from __future__ import annotations

import json
from pathlib import Path

COLUMNS = {  # section: [(key, header, format)]
    "throughput": [
        ("backbone", "backbone", "{}"), ("cut", "cut", "{}"), ("size", "px", "{}"),
        ("train_images", "train imgs", "{}"), ("medtl_img_s", "medtl img/s", "{:.1f}"),
        ("medtl_no_val_img_s", "medtl w/o val", "{:.1f}"), ("bare_img_s", "bare step", "{:.1f}"),
        ("conventional_img_s", "conventional", "{:.1f}"), ("conventional_cl_img_s", "conv. + channels_last", "{:.1f}"),
        ("medtl_vs_bare", "medtl / bare", "**{:.2f}**"), ("medtl_vs_bare_rounds", "(rounds)", "{}"),
        ("medtl_no_val_vs_bare", "w/o val / bare", "{:.2f}"),
        ("medtl_vs_conventional", "medtl / conv.", "**{:.2f}**"), ("medtl_vs_conventional_rounds", "(rounds)", "{}"),
        ("medtl_vs_conventional_cl", "medtl / conv.+cl", "{:.2f}"),
        ("medtl_vs_bare_cpu", "CPU-time medtl / bare", "{:.2f}"),
        ("medtl_vs_conventional_cpu", "CPU-time medtl / conv.", "{:.2f}"),
        ("validation_share", "val. share", "{:.0%}"), ("checkpoint_share", "ckpt share", "{:.1%}"),
    ],
    "fastpath": [
        ("option", "option", "{}"), ("model", "model", "{}"), ("with_img_s", "with img/s", "{:.1f}"),
        ("without_img_s", "without img/s", "{:.1f}"), ("speedup", "speed-up", "**{:.2f}x**"),
        ("compile_s", "compile s", "{:.0f}"), ("break_even_epochs", "break-even epochs", "{:.0f}"),
    ],
    "threads": [
        ("setting", "setting", "{}"), ("img_s", "img/s", "{:.1f}"), ("vs_default", "vs default", "**{:.2f}x**"),
        ("cpu_s_per_img", "CPU s / img", "{:.3f}"),
    ],
    "inference": [
        ("backbone", "backbone", "{}"), ("cut", "cut", "{}"), ("params_m", "params (M)", "{:.2f}"),
        ("gmacs", "GMACs", "{:.2f}"), ("macs_ratio", "MACs ratio", "**{:.2f}**"),
        ("latency_b1_ms", "latency b=1 (ms)", "{:.1f}"), ("latency_ratio", "latency ratio", "**{:.2f}**"),
        ("throughput_b64_img_s", "b=64 img/s", "{:.1f}"), ("throughput_ratio", "throughput x", "{:.2f}"),
    ],
    "memory": [
        ("run", "run (1 epoch)", "{}"), ("train_images", "train imgs", "{}"),
        ("rss_before_train_mb", "RSS before training (MiB)", "{:.0f}"), ("peak_rss_mb", "peak RSS (MiB)", "**{:.0f}**"),
    ],
    "bf16_metrics": [
        ("seed", "seed", "{}"), ("precision", "precision", "{}"), ("test_auroc", "test AUROC", "{:.4f}"),
        ("test_accuracy", "test accuracy", "{:.4f}"), ("best_epoch", "best epoch", "{}"),
        ("train_seconds", "train s", "{:.0f}"),
    ],
}


def cell(value, fmt: str) -> str:
    """A table cell; a list of per-round values shows as its range."""
    if value is None:
        return ""
    if isinstance(value, list):
        return f"{min(value):.2f}-{max(value):.2f}"
    return fmt.format(value)


def table(section: str, rows: list[dict]) -> str:
    cols = [c for c in COLUMNS[section] if any(c[0] in row for row in rows)]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [cell(row.get(key), fmt) for key, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    m = results["machine"]
    head = (f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), torch {m['torch']}, torchvision "
            f"{m['torchvision']}, Python {m['python']}, {m['torch_threads']} torch threads, OMP_WAIT_POLICY="
            f"{m['omp_wait_policy']}, GPU: {m['cuda'] or 'none'}. Load: {results['load']}. "
            f"Command: `{results['command']}` ({results['seconds'] / 60:.0f} min).")
    parts = [head]
    for section, rows in results["sections"].items():
        parts.append(f"### {section}\n\n{table(section, rows)}")
    return "\n\n".join(parts) + "\n"


def write(results: dict, out: Path) -> list[Path]:
    """``out.json`` / ``out.md``, or both when ``out`` has neither suffix."""
    targets = [out] if out.suffix in (".json", ".md") else [out.with_suffix(".json"), out.with_suffix(".md")]
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(results) if path.suffix == ".md" else json.dumps(results, indent=2) + "\n")
    return targets
