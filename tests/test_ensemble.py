"""`medtl ensemble`: the average of the members' probabilities, chosen on validation only, refused across data sets,
and usable by `medtl predict`."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import medtl
from conftest import FAST, save
from medtl.cli import main
from medtl.evaluation import classification_metrics
from medtl.evaluation.threshold import choose_threshold

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def members(fast_run, tmp_path_factory) -> list[Path]:
    """Two seeds at 32 px (seed 0: the shared run) and a third member at another cut and size: one data set, so the
    same images."""
    out = str(tmp_path_factory.mktemp("runs"))
    return [fast_run, *(medtl.train(out=out, verbose=False, **{**FAST, **extra}).run_dir
                        for extra in ({"seed": 1}, {"seed": 2, "cut": "blocks.1", "image_size": 40}))]


@pytest.fixture(scope="module")
def made(members, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "ensemble"
    assert main(["ensemble", *map(str, members), "--out", str(out), "--threads", "1", "--bootstrap", "200",
                 "--no-report"]) == 0
    return out


def table(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    rows = list(csv.DictReader(open(path)))
    return ([r["id"] for r in rows], np.array([int(r["label"]) for r in rows]),
            np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows]))


def test_the_ensemble_scores_the_mean_of_its_members_and_chooses_on_validation(members, made):
    metrics = json.loads((made / "metrics.json").read_text())
    for split in ("val", "test"):
        tables = [table(m / f"predictions_{split}.csv") for m in members]
        ids, labels, probs = table(made / f"predictions_{split}.csv")
        assert ids == tables[0][0] and (labels == tables[0][1]).all()
        mean = np.mean([t[2] for t in tables], axis=0)
        np.testing.assert_allclose(probs, mean, atol=1e-12)
        expected = classification_metrics(labels, mean, "binary", split)
        assert metrics[f"{split}_auroc"] == pytest.approx(expected["auroc"])
        assert metrics[f"{split}_accuracy"] == pytest.approx(expected["accuracy"])
        if split == "val":  # the threshold comes from the averaged validation probabilities
            assert metrics["threshold"] == pytest.approx(choose_threshold(labels, mean[:, 1]))
    member = json.loads((members[0] / "metrics.json").read_text())
    assert {k for k in member if k.startswith("test_")} <= set(metrics)  # every test metric and interval of a run
    assert metrics["parameters"] == sum(json.loads((m / "metrics.json").read_text())["parameters"] for m in members)
    assert metrics["cpu_latency_ms"] == pytest.approx(sum(metrics["member_latency_ms"]))
    assert metrics["cpu_latency_ms"] > 0
    assert [r["run"] for r in metrics["member_runs"]] == [str(m.resolve()) for m in members]
    card = (made / "MODEL_CARD.md").read_text()
    assert "ensemble of 3 runs" in card and "blocks.1" in card


def test_predict_on_an_ensemble_averages_the_members(members, made, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(medtl.load_dataset("breastmnist").test.images):
        Image.fromarray(image[0].numpy()).save(folder / f"test_{i:04d}.png")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(made), str(folder), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out)))
    probs = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
    np.testing.assert_allclose(probs, table(made / "predictions_test.csv")[2], atol=1e-5)
    threshold = json.loads((made / "metrics.json").read_text())["threshold"]
    assert {float(r["threshold"]) for r in rows} == {threshold}


def copy_member(member: Path, where: Path, name: str) -> Path:
    copy = where / name
    shutil.copytree(member, copy)
    return copy


def test_runs_on_other_images_are_refused(members, tmp_path, capsys):
    other = copy_member(members[1], tmp_path, "other")
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["data_fingerprint"]["test"] = "0" * 32
    (other / "metrics.json").write_text(json.dumps(metrics))
    assert main(["ensemble", str(members[0]), str(other), "--out", str(tmp_path / "e1")]) == 2
    assert "other test images" in capsys.readouterr().err

    reordered = copy_member(members[1], tmp_path, "reordered")
    lines = (reordered / "predictions_test.csv").read_text().splitlines()
    (reordered / "predictions_test.csv").write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    assert main(["ensemble", str(members[0]), str(reordered), "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "not of the same images" in err and str(reordered) in err

    old = copy_member(members[1], tmp_path, "old")
    (old / "predictions_val.csv").unlink()
    assert main(["ensemble", str(members[0]), str(old), "--out", str(tmp_path / "e3")]) == 2
    assert f"medtl train --resume {old}" in capsys.readouterr().err
    assert main(["ensemble", str(members[0]), "--out", str(tmp_path / "e4")]) == 2
    assert "at least two runs" in capsys.readouterr().err


def test_predict_refuses_an_ensemble_whose_member_changed(members, tmp_path, capsys):
    changed = copy_member(members[1], tmp_path, "changed")
    out = tmp_path / "ens"
    assert main(["ensemble", str(members[0]), str(changed), "--out", str(out), "--bootstrap", "0", "--no-report",
                 "--threads", "1"]) == 0
    shutil.copy(members[2] / "model.safetensors", changed / "model.safetensors")
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    assert main(["predict", str(out), str(png), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 2
    assert "changed since" in capsys.readouterr().err


def test_predict_reads_files_at_each_members_size(tmp_path):
    """Folder data is stored at --image-size, so members of two sizes read files differently; predict reads each
    file as each member's training loader did and reproduces the ensemble's test probabilities."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(20):
            image = rng.integers(0, 120, (48, 48), dtype=np.uint8)
            if cls == "b":
                image[12:36, 12:36] += 100
            save(tmp_path / "data" / cls / f"{cls}{i:02d}.png", image)
    runs = [medtl.train(data=str(tmp_path / "data"), out=str(tmp_path / "runs"), verbose=False,
                        **{**FAST, "image_size": size, "batch_size": 8}).run_dir for size in (32, 40)]
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "ens"), "--bootstrap", "0", "--no-report",
                 "--threads", "1"]) == 0
    ids, _, expected = table(tmp_path / "ens" / "predictions_test.csv")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(tmp_path / "ens"), *(str(tmp_path / "data" / i) for i in ids), "--out", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [str(Path(r["path"]).relative_to(tmp_path / "data")) for r in rows] == ids
    probs = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
