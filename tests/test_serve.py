"""``medtl serve`` over real HTTP on loopback, in a server process where torch cannot be imported: the answers equal
``medtl predict``'s for the same files, and every kind of bad input gets a 4xx JSON answer without a traceback, with
nothing written to disk and memory that stays flat."""
from __future__ import annotations

import csv
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST, ROOT, wait_for
from medtl.cli import main
from medtl.errors import ConfigError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")


def tiny_onnx(folder: Path, seed: int = 0) -> Path:
    """A medtl-format ONNX model without training: grey 32 px input, flatten, a random linear layer, softmax; every
    pixel counts, so any difference in preprocessing shows in the probabilities."""
    from onnx import TensorProto, helper, numpy_helper

    from medtl.deploy.predict import SPEC_KEY
    from medtl.model import ModelSpec

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array((rng.standard_normal((1024, 2)) * 0.05).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    spec = ModelSpec(backbone="tiny", library="none", arch="tiny", cut="flatten", units=[], head="flatten",
                     num_classes=2, in_chans=1, image_size=32, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                     classes=["benign", "malignant"], task="binary", threshold=0.4, read_size=28)
    helper.set_model_props(model, {SPEC_KEY: json.dumps(asdict(spec)), "preprocessing": json.dumps({"image_size": 32})})
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    (folder / "MODEL_CARD.md").write_text("# Model card: tiny\n\nResearch use only.\n\n## Performance\n\nnone\n")
    return folder / "model.onnx"


def images(folder: Path) -> list[Path]:
    """Files of every kind predict reads: grey PNG at the read size and larger, colour JPEG, RGBA PNG, 16-bit PNG."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, array, mode in (("grey28.png", rng.integers(0, 256, (28, 28), np.uint8), None),
                              ("grey50.png", rng.integers(0, 256, (50, 50), np.uint8), None),
                              ("grey20.png", rng.integers(0, 256, (20, 20), np.uint8), None),
                              ("colour.jpg", rng.integers(0, 256, (40, 36, 3), np.uint8), None),
                              ("alpha.png", rng.integers(0, 256, (30, 30, 4), np.uint8), None),
                              ("deep.png", rng.integers(0, 65536, (33, 33), np.uint16), "I;16")):
        Image.fromarray(array, mode).save(folder / name) if mode is None else \
            Image.fromarray(array).convert("I;16").save(folder / name)
        files.append(folder / name)
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``medtl serve`` in another process whose ``import torch`` fails and whose ``tempfile`` refuses to make files,
    with a TMPDIR of its own to check."""

    def __init__(self, model: Path, tmp: Path, *args: str):
        blocker = tmp / "no_torch"
        blocker.mkdir(parents=True, exist_ok=True)
        (blocker / "torch.py").write_text("raise ImportError('medtl serve imported torch')\n")
        # and no temporary file (Starlette's form parser spools uploads to one, unnamed, above 1 MB)
        (blocker / "sitecustomize.py").write_text(
            "import tempfile\n"
            "def _refuse(*args, **kwargs):\n    raise OSError('medtl serve made a temporary file')\n"
            "for _name in ('TemporaryFile', 'NamedTemporaryFile', 'SpooledTemporaryFile', 'mkstemp', 'mkdtemp'):\n"
            "    setattr(tempfile, _name, _refuse)\n")
        self.tmpdir = tmp / "server_tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}", "TMPDIR": str(self.tmpdir)}
        self.proc = subprocess.Popen([sys.executable, "-m", "medtl", "serve", str(model), "--port", str(self.port),
                                      "--threads", "1", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self._up, "the server answering /health", timeout=120, proc=self.proc)

    def _up(self) -> bool:
        try:
            return self.get("/health")[0] == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, bytes]:
        return request(urllib.request.Request(self.url + path))

    def post(self, files: list[tuple[str, bytes]], field: str = "file", content_type: str | None = None,
             body: bytes | None = None) -> tuple[int, dict]:
        boundary = uuid.uuid4().hex
        if body is None:
            body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                            f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                            for name, data in files) + f"--{boundary}--\r\n".encode()
        status, raw = self.send(body, content_type or f"multipart/form-data; boundary={boundary}")
        assert b"Traceback" not in raw and b'File "' not in raw, raw[:500]
        return status, json.loads(raw)

    def send(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        """POST /predict; a server that answers before the whole body is sent (413) may close the connection while
        the client still writes, as servers do: the answer is read all the same."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest("POST", "/predict")
            conn.putheader("Content-Type", content_type)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            try:
                for i in range(0, len(body), 65536):
                    conn.send(body[i:i + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


def request(req: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def predicted(model: Path, files: list[Path], out: Path) -> dict[str, list[float]]:
    """``medtl predict``'s probabilities per file name (torch's preprocessing, or the run's torch model)."""
    assert main(["predict", str(model), *map(str, files), "--out", str(out), "--quiet"]) == 0
    return {Path(r["path"]).name: [float(v) for k, v in r.items() if k.startswith("prob_")]
            for r in csv.DictReader(open(out))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    srv = Server(tiny.parent, tmp_path_factory.mktemp("serve"), "--max-body-mb", "4")
    yield srv
    srv.stop()


def test_answers_equal_medtl_predict_without_torch(server, tiny, tmp_path):
    files = images(tmp_path / "images")
    # predict makes a whole batch float when one file is 16-bit (8-bit luma is then not rounded): score apart
    expected = {**predicted(tiny, files[:-1], tmp_path / "p.csv"), **predicted(tiny, files[-1:], tmp_path / "q.csv")}
    status, body = server.post([(f.name, f.read_bytes()) for f in files])  # one request, a batch of six
    assert status == 200, body
    assert [p["file"] for p in body["predictions"]] == [f.name for f in files]
    for p in body["predictions"]:
        got = [p["probabilities"]["benign"], p["probabilities"]["malignant"]]
        assert got == pytest.approx(expected[p["file"]], abs=2e-6), p["file"]
        assert p["prediction"] == ("malignant" if got[1] >= 0.4 else "benign") and p["threshold"] == 0.4
    assert body["model"]["id"] == tiny.parent.name and len(body["model"]["version"]) == 12
    status, one = server.post([(files[0].name, files[0].read_bytes())])
    assert status == 200 and one["predictions"][0] == body["predictions"][0]


def test_health_metadata_and_page(server):
    status, raw = server.get("/health")
    assert status == 200 and json.loads(raw)["status"] == "ok"
    meta = json.loads(server.get("/metadata")[1])
    assert meta["classes"] == ["benign", "malignant"] and meta["threshold"] == 0.4
    assert meta["input"] == {"channels": 1, "image_size": 32, "read_size": 28}
    assert meta["model_card"]["title"] == "Model card: tiny" and meta["model_card"]["Performance"] == "none"
    status, page = server.get("/")
    assert status == 200 and b'id="drop"' in page and b"fetch(\"predict\"" in page


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _frames() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (0, 255)]
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _huge() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (8000, 7000)).save(buffer, "PNG")  # 56 million pixels in a few kB
    return buffer.getvalue()


BAD = {
    "not an image": (422, dict(files=[("notes.png", b"these are words, not pixels")])),
    "corrupt": (422, dict(files=[("cut.png", _png(np.zeros((64, 64), np.uint8))[:60])])),
    "multi-frame": (422, dict(files=[("stack.tif", _frames())])),
    "too many pixels": (422, dict(files=[("huge.png", _huge())])),
    "too large": (413, dict(files=[("big.png", os.urandom(5 * 2**20))])),
    "wrong content type": (415, dict(files=[], body=b'{"image": "x"}', content_type="application/json")),
    "no file": (422, dict(files=[], body=b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
                          content_type="multipart/form-data; boundary=b")),
    "malformed form": (422, dict(files=[], body=b"--b\r\ngarbage", content_type="multipart/form-data; boundary=b")),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_is_a_4xx_json_message(server, kind):
    expected, request_args = BAD[kind]
    status, body = server.post(**request_args)
    assert status == expected and isinstance(body["error"], str) and body["error"], body


def test_bad_requests_write_nothing_and_keep_memory_flat(server):
    big_image = _png(np.random.default_rng(2).integers(0, 256, (1500, 1500), np.uint8))  # 2 MB: above Starlette's
    assert 2**20 < len(big_image) < 4 * 2**20  # 1 MB spooling threshold, within this server's 4 MB limit
    present = set(server.tmpdir.iterdir())  # onnxruntime's import leaves a .ses file there
    assert server.post([("big.png", big_image)])[0] == 200
    kinds = [BAD[k][1] for k in ("not an image", "corrupt", "multi-frame", "too many pixels")]
    for i in range(40):  # warm-up: allocator pools and caches reach their size
        server.post(**kinds[i % len(kinds)])
    before = server.rss_kib()
    for i in range(200):  # benchmarks measure 1,000 (docs/guide/serving.md)
        assert server.post(**kinds[i % len(kinds)])[0] == 422
    growth = server.rss_kib() - before
    assert growth < 8 * 1024, f"the server grew by {growth} KiB over 200 bad requests"
    assert set(server.tmpdir.iterdir()) == present  # no upload spooled or written


def test_a_run_without_export_is_refused_with_the_command(tmp_path, capsys):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert main(["serve", str(tmp_path)]) == 2
    assert f"medtl export {tmp_path}" in capsys.readouterr().err


def test_an_ensemble_averages_its_members_exports_at_its_threshold(tmp_path, tiny):
    from medtl.deploy.serve.model import load

    runs = []
    for seed in (1, 2):
        run = tmp_path / f"run{seed}"
        (run / "export").mkdir(parents=True)
        (run / "model.safetensors").write_bytes(b"")
        os.utime(run / "model.safetensors", (1, 1))  # older than the export, as after `medtl export`
        tiny_onnx(run / "export", seed)
        runs.append(run)
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps({"members": [str(r) for r in runs], "threshold": 0.3}))
    image = np.random.default_rng(3).integers(0, 256, (28, 28, 1), np.uint8)
    ensemble, members = load(tmp_path / "ens"), [load(r) for r in runs]
    prob = ensemble(tuple(x[None] for x in ensemble.prepare(image)))[0]
    alone = [m(tuple(x[None] for x in m.prepare(image)))[0] for m in members]
    assert prob == pytest.approx(np.mean(alone, axis=0), abs=1e-7) and not np.allclose(alone[0], alone[1])
    assert ensemble.decide(prob)["threshold"] == 0.3 and members[0].threshold == 0.4
    os.utime(runs[0] / "model.safetensors")  # the run changed after its export
    with pytest.raises(ConfigError, match="older than"):
        load(tmp_path / "ens")


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    import medtl

    run = medtl.train(out=str(tmp_path_factory.mktemp("runs")), verbose=False, **FAST).run_dir
    assert main(["export", str(run)]) == 0
    return run


@pytest.mark.slow
def test_serving_a_run_equals_medtl_predict_of_the_run(exported_run, tmp_path):
    import medtl

    folder = tmp_path / "test_pngs"
    folder.mkdir()
    for i, image in enumerate(medtl.load_dataset("breastmnist").test.images[:24]):
        Image.fromarray(image[0].numpy()).save(folder / f"test_{i:03d}.png")
    files = sorted(folder.iterdir())
    expected = predicted(exported_run, files, tmp_path / "p.csv")  # the run's torch model
    srv = Server(exported_run, tmp_path)
    try:
        for chunk in (files[:1], files[1:]):
            status, body = srv.post([(f.name, f.read_bytes()) for f in chunk])
            assert status == 200, body
            for p in body["predictions"]:
                assert list(p["probabilities"].values()) == pytest.approx(expected[p["file"]], abs=1e-5)
    finally:
        srv.stop()
