"""Real (short) training runs: the built-in BreastMNIST, ImageFolder and CSV sources, artefacts, reload, CLI."""
from __future__ import annotations

import csv
import json

import conftest
import numpy as np
import pytest
import torch
from PIL import Image

import medtl
from medtl.cli import main

FAST = {**conftest.FAST, "epochs": 2, "batch_size": 64, "threads": 2}
ARTEFACTS = ["config.yaml", "history.csv", "metrics.json", "predictions_test.csv", "model.safetensors", "model.json",
             "checkpoint.pt"]


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory):
    return medtl.train(out=str(tmp_path_factory.mktemp("runs")), verbose=False,
                       **{**FAST, "epochs": 6, "image_size": 48, "cut": "blocks.3"})


@pytest.mark.slow
def test_breastmnist_learns(breast_run):
    m = breast_run.metrics
    assert m["test_auroc"] > 0.75 and 0 < m["test_auprc"] <= 1
    assert m["data_source"]["kind"] == "builtin"
    assert {p.name for p in breast_run.run_dir.iterdir()} >= set(ARTEFACTS)
    history = list(csv.DictReader(open(breast_run.run_dir / "history.csv")))
    assert len(history) == 6 and 1 <= m["best_epoch"] <= 6
    # the selected epoch is the best on validation AUROC (ties broken by validation loss)
    best = max(history, key=lambda r: (float(r["val_auroc"]), -float(r["val_loss"])))
    assert int(best["epoch"]) == m["best_epoch"]


@pytest.mark.slow
def test_reloaded_model_reproduces_saved_predictions(breast_run):
    model = medtl.load_model(breast_run.run_dir)
    data = medtl.load_dataset("breastmnist")
    pre = medtl.Preprocess(model.spec.image_size, tuple(model.spec.mean), tuple(model.spec.std))
    with torch.no_grad():
        prob = model(pre(data.test.images)).softmax(1).numpy()
    rows = list(csv.DictReader(open(breast_run.run_dir / "predictions_test.csv")))
    saved = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
    np.testing.assert_allclose(prob, saved, atol=1e-5)
    again = medtl.evaluate(breast_run.run_dir)
    assert again["auroc"] == pytest.approx(breast_run.metrics["test_auroc"], abs=1e-6)


@pytest.mark.slow
def test_same_seed_same_metrics(fast_run, tmp_path):
    a = json.loads((fast_run / "metrics.json").read_text())  # the shared session run
    again = medtl.train(out=str(tmp_path), verbose=False, **conftest.FAST).run_dir
    b = json.loads((again / "metrics.json").read_text())
    keys = [k for k in a if k.startswith(("test_", "val_"))]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def _write_images(root, data, n=40):
    """Real BreastMNIST images written as PNG files; returns (path, class) pairs."""
    pairs = []
    for split, part in (("train", data.train), ("test", data.test)):
        for i in range(n if split == "train" else n // 2):
            label = data.classes[int(part.labels[i])]
            folder = root / split / label.replace(",", "").replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{i}.png"
            Image.fromarray(part.images[i, 0].numpy()).resize((40, 40)).save(path)
            pairs.append((path, folder.name, split))
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("source", ["folder", "csv"])
def test_folder_and_csv_sources_train_end_to_end(tmp_path, source):
    pairs = _write_images(tmp_path / "images", medtl.load_dataset("breastmnist"))
    spec = tmp_path / "images"
    if source == "csv":
        spec = tmp_path / "manifest.csv"
        with open(spec, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "split"])
            for path, label, split in pairs:
                w.writerow([path.relative_to(tmp_path), label, split])
    result = medtl.train(data=str(spec), out=str(tmp_path / "runs"), verbose=False, **FAST)
    assert {p.name for p in result.run_dir.iterdir()} >= set(ARTEFACTS)
    spec_json = json.loads((result.run_dir / "model.json").read_text())
    assert spec_json["classes"] == ["malignant", "normal_benign"] and spec_json["in_chans"] == 1
    again = medtl.evaluate(result.run_dir)
    assert again["auroc"] == pytest.approx(result.metrics["test_auroc"], abs=1e-6)


@pytest.mark.slow
def test_cli_train_with_yaml_config_and_flag_override(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("backbone: efficientnet_lite0\ncut: blocks.1\nimage-size: 32\nepochs: 3\nthreads: 2\n")
    assert main(["train", "--config", str(config), "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test AUROC" in out and "parameters" in out
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    saved = (run / "config.yaml").read_text()
    assert "epochs: 1" in saved and "cut: blocks.1" in saved


@pytest.mark.parametrize("args,message", [
    (["train", "--backbone", "resnet5"], "Did you mean"),
    (["train", "--cut", "blocks.99"], "unknown cut"),
    (["train", "--data", "breastmnst"], "breastmnist"),
    (["train", "--strategy", "lwft"], "--freeze-to"),
])
def test_cli_bad_input_exits_2_without_traceback(args, message, tmp_path, capsys):
    # in-process (the same main() the console script calls); tests/test_bad_input.py runs a real process
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow  # builds ResNet-50 at every cut and counts its MACs at 224 px
def test_cli_cuts_prints_resnet50_table(capsys):
    assert main(["cuts", "--backbone", "resnet50", "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    for cut, params in [("stem", "9,666"), ("layer1", "225,858"), ("layer2", "1,445,954"), ("layer3.3", "6,310,978"),
                        ("layer3", "8,545,346"), ("layer4", "23,512,130")]:
        assert any(line.split()[0] == cut and params in line for line in out.splitlines()), cut
    assert "1024x14x14" in out
