"""The model outside the lab: onnxruntime vs torch CPU inference, and ``medtl predict``'s peak memory.

``python benchmarks/deploy.py latency --threads 1,2 --rounds 5 --out benchmarks/results/deploy-latency``
    Each model is exported with ``medtl.deploy.export`` 's exporter (``torch.onnx.export(dynamo=True)``, opset 18)
    and timed against the same model in torch (eval, ``inference_mode``, channels_last, as ``medtl`` predicts):
    latency at batch 1 and throughput at batch 64, torch and onnxruntime interleaved in rounds with the same number
    of threads (torch.set_num_threads / ORT intra-op threads). Random weights: speed does not depend on them.
``python benchmarks/deploy.py memory --images 20000 [--cut blocks.3 --image-size 64]``
    ``medtl predict`` on N 28 px PNG files (default: the default model, Lite0 ``blocks.3``, 64 px) in a fresh process,
    peak resident memory from ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, next to the same for 1,000 files: streaming
    keeps it flat in N.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import interleave, load_note, machine, ratio  # noqa: E402
from benchmarks.inference import timed_forward  # noqa: E402
from benchmarks.run import with_omp_policy  # noqa: E402

MODELS = {  # name: (backbone, cut or None = full, channels, image size)
    "efficientnet_lite0 blocks.3, 64 px (default)": ("efficientnet_lite0", "blocks.3", 1, 64),
    "resnet50 layer3.3, 224 px": ("resnet50", "layer3.3", 3, 224),
    "resnet50 full, 224 px": ("resnet50", None, 3, 224),
}


def _export(model: torch.nn.Module, channels: int, size: int, path: Path) -> None:
    from medtl.deploy.export import OPSET, WithProbabilities

    torch.onnx.export(WithProbabilities(model).eval(), (torch.zeros(2, channels, size, size),), str(path),
                      dynamo=True, external_data=False, opset_version=OPSET, input_names=["input"],
                      output_names=["probabilities"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                      verbose=False)




def _ort_runner(session, x: torch.Tensor, repeats: int):
    feed = {"input": x.numpy()}
    session.run(None, feed)

    def run():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        return len(x), statistics.median(times), {}
    return run


def latency(threads: list[int], rounds: int) -> list[dict]:
    import onnxruntime as ort

    from medtl.model import build_classifier

    rows = []
    with tempfile.TemporaryDirectory(prefix="medtl-bench-onnx-") as tmp:
        for name, (backbone, cut, channels, size) in MODELS.items():
            model = build_classifier(backbone, 2, cut=cut, weights=None, in_chans=channels, image_size=size,
                                     task="binary").eval()
            path = Path(tmp) / "model.onnx"
            _export(model, channels, size, path)
            model.to(memory_format=torch.channels_last)
            for n in threads:
                torch.set_num_threads(n)
                options = ort.SessionOptions()
                options.intra_op_num_threads, options.inter_op_num_threads = n, 1
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                x1, x64 = torch.randn(1, channels, size, size), torch.randn(64, channels, size, size)
                b1 = interleave({"torch": timed_forward(model, x1, 20), "onnxruntime": _ort_runner(session, x1, 20)},
                                rounds)
                b64 = interleave({"torch": timed_forward(model, x64, 1), "onnxruntime": _ort_runner(session, x64, 1)},
                                 rounds)
                rows.append({
                    "model": name, "threads": n,
                    "torch_b1_ms": 1e3 / b1["torch"].rate(), "ort_b1_ms": 1e3 / b1["onnxruntime"].rate(),
                    "ort_speedup_b1": ratio(b1["onnxruntime"], b1["torch"]),
                    "torch_b64_img_s": b64["torch"].rate(), "ort_b64_img_s": b64["onnxruntime"].rate(),
                    "ort_speedup_b64": ratio(b64["onnxruntime"], b64["torch"]),
                })
                print(json.dumps(rows[-1]), flush=True)
            path.unlink()
    return rows


def _predict_peak_rss_mb(run: Path, folder: Path, threads: int) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``medtl predict`` in a fresh child process (the only child so far: RUSAGE_CHILDREN
    is its maximum). Called once per process (see ``memory``)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medtl", "predict", str(run), str(folder), "--out", str(folder / "p.csv"),
                    "--threads", str(threads), "--quiet"], check=True, cwd=ROOT)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - start


def memory(images: int, threads: int, cut: str, image_size: int) -> list[dict]:
    """Peak RSS of predicting 1,000 and ``images`` files with EfficientNet-Lite0 cut at ``cut``, ``image_size`` px;
    each measured from its own fresh parent process, so that RUSAGE_CHILDREN's maximum belongs to that one child."""
    import medtl
    from medtl.artifacts import save_model
    from medtl.model import build_classifier
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory(prefix="medtl-bench-predict-") as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        model = build_classifier("efficientnet_lite0", 2, cut=cut, weights=None, in_chans=1, image_size=image_size,
                                 classes=["malignant", "normal, benign"], task="binary")
        model.spec.read_size, model.spec.threshold = 28, 0.5
        save_model(model, run)
        source = medtl.load_dataset("breastmnist").train.images[:, 0].numpy()
        for n in sorted({1000, images}):
            folder = Path(tmp) / f"images-{n}"
            for i in range(n):
                sub = folder / f"{i // 1000:03d}"  # 1,000 files per folder
                sub.mkdir(parents=True, exist_ok=True)
                Image.fromarray(source[i % len(source)]).save(sub / f"{i:06d}.png")
            code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                    "from benchmarks.deploy import _predict_peak_rss_mb;"
                    f"from pathlib import Path; print(*_predict_peak_rss_mb(Path({str(run)!r}), Path({str(folder)!r}), "
                    f"{threads}))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            rss, seconds = map(float, out.split()[-2:])
            rows.append({"model": f"efficientnet_lite0 {cut}, {image_size} px", "images": n, "peak_rss_mib": rss,
                         "seconds": seconds, "images_per_s": n / seconds})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str]) -> None:
    with_omp_policy("PASSIVE")  # as benchmarks/run.py: spinning OpenMP threads distort a busy machine's figures
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("latency", "memory"))
    p.add_argument("--threads", default="1,2", help="latency: comma-separated thread counts; memory: the first")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--cut", default="blocks.3", help="memory: EfficientNet-Lite0 cut (default: the default model's)")
    p.add_argument("--image-size", type=int, default=64, help="memory: model input size (default 64)")
    p.add_argument("--out", type=Path, help="write FILE.json")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    info = {"machine": machine()}
    if args.what == "latency":
        rows = latency(threads, args.rounds)
    else:
        rows = memory(args.images, threads[0], args.cut, args.image_size)
    info.update(rows=rows, load=load_note() if args.what == "latency" else f"1-min load {os.getloadavg()[0]:.1f}")
    print(info["load"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
