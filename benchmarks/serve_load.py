"""``medtl serve`` under load, on loopback only: latency (p50, p99) and requests/s at 1, 8 and 32 concurrent clients,
next to in-process ``medtl predict`` on the same images; and the server's memory over 1,000 bad requests.

``python benchmarks/serve_load.py --model RUN [--images 64 --requests 400 --seconds 30 --threads 1]``
    RUN is a run directory exported with ``medtl export RUN``. The images are the first ``--images`` BreastMNIST test
    images as PNG files. The server runs in its own process on 127.0.0.1 (``--max-batch 32 --batch-window-ms 5``);
    each client is a thread with one keep-alive connection sending one image per request. Every level stops after
    ``--requests`` requests or ``--seconds`` seconds, whichever comes first, so the benchmark ends by itself. The
    clients share the machine's cores with the server: on a 2-core machine the figures are a floor.
    ``medtl predict`` is timed in this process: once per image (one file per call, as a client would) and once on
    all the images (one call), with the run's torch model and with its ONNX export, on ``--threads`` threads.
Writes ``benchmarks/results/serve-load.json`` and prints the table of docs/guide/serving.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402

LEVELS = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, *options: str, timeout: float = 120) -> tuple[subprocess.Popen, int]:
    """``medtl serve MODEL OPTIONS`` on a free port, once ``/health`` answers 200; exits naming the server's error
    if it ends or does not answer within ``timeout`` seconds. The caller terminates it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "medtl", "serve", str(model), "--port", str(port), *options],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return server, port
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"the server did not start: {server.communicate()[1]}")
        time.sleep(0.2)


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(conn: http.client.HTTPConnection, body: bytes, content_type: str) -> int:
    conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    response.read()
    return response.status


def load_level(port: int, bodies: list[tuple[bytes, str]], clients: int, requests: int, seconds: float) -> dict:
    """``clients`` threads sending requests until ``requests`` were sent in all or ``seconds`` passed."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    sent = [0]
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= requests:
                    break
                sent[0] += 1
            body, kind = bodies[i % len(bodies)]
            began = time.perf_counter()
            status = post(conn, body, kind)
            took = time.perf_counter() - began
            with lock:
                latencies.append(took)
                errors[0] += status != 200
            i += clients
        conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "errors": errors[0], "seconds": wall,
            "requests_per_s": len(latencies) / wall, "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def bad_requests(port: int, pid: int, count: int) -> dict:
    """The server's resident memory before and after ``count`` bad requests (four kinds in turn)."""
    import io

    import numpy as np
    from PIL import Image

    good = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(good, "PNG")
    stack = io.BytesIO()
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (0, 255)]
    frames[0].save(stack, "TIFF", save_all=True, append_images=frames[1:])
    kinds = [multipart("notes.png", b"not pixels"), multipart("cut.png", good.getvalue()[:60]),
             multipart("stack.tif", stack.getvalue()), (b'{"x": 1}', "application/json")]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(50):  # warm-up
        post(conn, *kinds[i % len(kinds)])
    before = rss_kib(pid)
    statuses = [post(conn, *kinds[i % len(kinds)]) for i in range(count)]
    after = rss_kib(pid)
    conn.close()
    return {"bad_requests": count, "statuses": sorted(set(statuses)), "rss_before_mib": before / 1024,
            "rss_after_mib": after / 1024, "growth_mib": (after - before) / 1024}


def predict_in_process(model: Path, files: list[Path], threads: int, out: Path) -> dict:
    """``medtl predict`` in this process: per image (one file per call) and all images in one call."""
    import torch

    from medtl.deploy.predict import load_scorer, predict

    torch.set_num_threads(threads)
    scorer = load_scorer(model)
    predict(scorer, files[:4], out, verbose=False)  # warm-up
    per_image = []
    for f in files:
        began = time.perf_counter()
        predict(scorer, [f], out, verbose=False)
        per_image.append(time.perf_counter() - began)
    began = time.perf_counter()
    predict(scorer, files, out, verbose=False)
    batch = time.perf_counter() - began
    return {"p50_ms": 1000 * statistics.median(per_image), "images_per_s_one_by_one": len(files) / sum(per_image),
            "images_per_s_one_call": len(files) / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory with export/model.onnx")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level, at most")
    parser.add_argument("--seconds", type=float, default=30, help="seconds per concurrency level, at most")
    parser.add_argument("--threads", type=int, default=1, help="model threads (server and in-process predict)")
    parser.add_argument("--bad", type=int, default=1000, help="bad requests for the memory check")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve-load.json")
    args = parser.parse_args()

    import medtl
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    files = []
    for i, image in enumerate(medtl.load_dataset("breastmnist").test.images[:args.images]):
        files.append(tmp / f"test_{i:03d}.png")
        Image.fromarray(image[0].numpy()).save(files[-1])
    bodies = [multipart(f.name, f.read_bytes()) for f in files]
    server, port = start_server(args.model, "--threads", str(args.threads), "--max-batch", "32",
                                "--batch-window-ms", "5")
    try:
        load_start = os.getloadavg()[0]
        levels = [load_level(port, bodies, c, args.requests, args.seconds) for c in LEVELS]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        memory = bad_requests(port, server.pid, args.bad)
    finally:
        server.terminate()
        server.wait(timeout=30)
    baseline = {"torch (run directory)": predict_in_process(args.model, files, args.threads, tmp / "p.csv"),
                "onnxruntime (export)": predict_in_process(args.model / "export" / "model.onnx", files, args.threads,
                                                           tmp / "p.csv")}
    result = {"model": args.model.name, "images": len(files), "threads": args.threads, "levels": levels,
              "server_batches": health["batches"], "server_images": health["images"], "memory": memory,
              "predict_in_process": baseline, "machine": machine(), "load_at_levels_start": load_start,
              "load_at_end": os.getloadavg()[0],
              "command": " ".join(["python", "benchmarks/serve_load.py",
                                   *("RUN" if a == str(args.model) else a for a in sys.argv[1:])])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| clients | requests | requests/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|")
    for r in levels:
        print(f"| {r['clients']} | {r['requests']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['errors']} |")
    for name, b in baseline.items():
        print(f"medtl predict in-process, {name}: {b['p50_ms']:.1f} ms per single-file call (p50), "
              f"{b['images_per_s_one_by_one']:.1f} images/s one by one, {b['images_per_s_one_call']:.1f} images/s "
              "in one call")
    print(f"server: {health['images']} images in {health['batches']} model calls; memory over {memory['bad_requests']} "
          f"bad requests: {memory['rss_before_mib']:.1f} -> {memory['rss_after_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
