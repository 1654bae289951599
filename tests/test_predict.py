"""`medtl predict` and `medtl export`: the same probabilities as the run, from image files and from ONNX."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medtl
from medtl.cli import main
from medtl.deploy.card import MODEL_CARD, model_card
from medtl.deploy.predict import predict
from medtl.errors import MedtlWarning

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(fast_run) -> Path:
    return fast_run


@pytest.fixture(scope="module")
def test_pngs(tmp_path_factory) -> Path:
    """The built-in BreastMNIST test images as 28 px grey PNG files, in test order (nested: no class folders)."""
    folder = tmp_path_factory.mktemp("pngs")
    images = medtl.load_dataset("breastmnist").test.images
    for i, image in enumerate(images):
        sub = folder / ("a" if i < 100 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(sub / f"test_{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> tuple[Path, str]:
    """(the export folder, what `medtl export` printed)."""
    out = tmp_path_factory.mktemp("export")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(run), "--out", str(out)]) == 0
    return out, printed.getvalue()


def saved_probabilities(run: Path) -> np.ndarray:
    rows = list(csv.DictReader(open(run / "predictions_test.csv")))
    return np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])


def read_predictions(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path)))


def probabilities(rows: list[dict]) -> np.ndarray:
    return np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])


def test_predict_on_png_files_reproduces_the_runs_test_predictions(run, test_pngs, tmp_path):
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(test_pngs), "--out", str(out), "--batch-size", "50", "--quiet"]) == 0
    rows = read_predictions(out)
    assert [Path(r["path"]).name for r in rows] == [f"test_{i:04d}.png" for i in range(156)]
    np.testing.assert_allclose(probabilities(rows), saved_probabilities(run), atol=1e-5)
    spec = json.loads((run / "model.json").read_text())
    assert 0 < spec["threshold"] < 1 and spec["read_size"] == 28
    assert {float(r["threshold"]) for r in rows} == {spec["threshold"]}
    assert all(r["prediction"] == spec["classes"][int(float(r["prob_normal, benign"]) >= spec["threshold"])]
               for r in rows)


def test_predict_threshold_override_and_csv_input(run, test_pngs, tmp_path):
    manifest = tmp_path / "list.csv"
    files = sorted(test_pngs.rglob("*.png"))[:5]
    manifest.write_text("path\n" + "".join(f"{f}\n" for f in files))
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(manifest), "--out", str(out), "--threshold", "1.0", "--quiet"]) == 0
    rows = read_predictions(out)
    assert len(rows) == 5 and {r["prediction"] for r in rows} == {"malignant"} and rows[0]["threshold"] == "1.0"


def test_corrupt_file_is_listed_with_skip_and_stops_without(run, test_pngs, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in sorted(test_pngs.rglob("*.png"))[:3]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--quiet"]) == 2
    assert "broken.png" in capsys.readouterr().err and not out.exists()
    assert main(["predict", str(run), str(folder), "--out", str(out), "--quiet", "--skip-bad-images"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "1 unreadable" in captured.out
    assert [Path(r["path"]).name for r in read_predictions(out)] == sorted(f.name for f in folder.glob("test_*"))


def test_a_batch_of_only_unreadable_files_is_skipped(run, test_pngs, tmp_path):
    folder = tmp_path / "bad-first"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    (folder / "b.png").write_bytes((sorted(test_pngs.rglob("*.png"))[0]).read_bytes())
    with pytest.warns(MedtlWarning, match="a.png"):
        result = predict(run, [folder], tmp_path / "p.csv", skip_bad_images=True, batch_size=1, verbose=False)
    assert result.predicted == 1 and len(result.skipped) == 1 and "a.png" in result.skipped[0]


def test_tta_hflip_averages_the_mirror(run, test_pngs, tmp_path):
    plain, tta = tmp_path / "plain.csv", tmp_path / "tta.csv"
    files = [str(f) for f in sorted(test_pngs.rglob("*.png"))[:8]]
    assert main(["predict", str(run), *files, "--out", str(plain), "--quiet"]) == 0
    assert main(["predict", str(run), *files, "--out", str(tta), "--quiet", "--tta", "hflip"]) == 0
    a, b = probabilities(read_predictions(plain)), probabilities(read_predictions(tta))
    np.testing.assert_allclose(b.sum(1), 1, atol=1e-6)
    assert not np.allclose(a, b)
    metrics = medtl.evaluate(run, tta="hflip")
    assert 0.5 < metrics["auroc"] <= 1


def test_metrics_report_the_operating_point_chosen_on_validation(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threshold_rule"] == "Youden's J"
    for key in ("test_sensitivity", "test_specificity", "test_ppv", "test_npv"):
        assert 0 <= metrics[key] <= 1
    assert list(metrics["split_counts"]["test"].values()) == [42, 114]
    rows = read_predictions(run / "predictions_test.csv")
    assert "id" not in rows[0] or rows[0]["id"]


def test_model_card_is_written_and_regenerated(run):
    card = (run / MODEL_CARD).read_text()
    assert card == model_card(run)
    for text in ("not a medical device", "breastmnist", "blocks.2", "validation", "Youden", "55,010", "28 px"):
        assert text in card


def test_export_writes_one_self_contained_onnx_checked_against_torch(run, exported):
    exported, printed = exported
    diff = float(re.search(r"max \|difference\| of the probabilities (\S+)", printed)[1])
    assert diff < 1e-4 and "on 64 test images" in printed
    assert sorted(p.name for p in exported.iterdir()) == [MODEL_CARD, "model.onnx", "model.onnx.json"]
    info = json.loads((exported / "model.onnx.json").read_text())
    assert info["opset"] == 18 and info["input"]["shape"] == ["batch", 1, 32, 32] and info["cut"] == "blocks.2"
    # onnxruntime alone (no torch, no medtl) loads it and reads the metadata
    check = ("import json, sys, numpy as np, onnxruntime as ort\n"
             f"s = ort.InferenceSession({str(exported / 'model.onnx')!r}, providers=['CPUExecutionProvider'])\n"
             "meta = s.get_modelmeta().custom_metadata_map\n"
             "p = s.run(None, {'input': np.zeros((3, 1, 32, 32), np.float32)})[0]\n"
             "assert p.shape == (3, 2) and np.allclose(p.sum(1), 1, atol=1e-5)\n"
             "assert 'torch' not in sys.modules and 'medtl' not in sys.modules\n"
             "print(json.loads(meta['classes']), meta['cut'], json.loads(meta['preprocessing'])['image_size'])\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['malignant',", "'normal,", "benign']", "blocks.2", "32"]


def test_predict_with_the_onnx_file_matches_the_run(run, exported, test_pngs, tmp_path):
    exported, _ = exported
    out = tmp_path / "onnx.csv"
    assert main(["predict", str(exported / "model.onnx"), str(test_pngs), "--out", str(out), "--quiet"]) == 0
    rows = read_predictions(out)
    np.testing.assert_allclose(probabilities(rows), saved_probabilities(run), atol=1e-4)
    reference = read_predictions(run / "predictions_test.csv")
    spec = json.loads((run / "model.json").read_text())
    assert [r["prediction"] for r in rows] == [
        spec["classes"][int(float(r["prob_normal, benign"]) >= spec["threshold"])] for r in reference]
