"""Graded labels and rare classes: the cumulative-link head (`--ordinal-head`) and the imbalance warning."""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import medtl
from conftest import FAST_ARGS
from medtl.cli import main
from medtl.data.balance import warn_imbalance
from medtl.errors import MedtlWarning
from medtl.model import CumulativeLink


def graded_npz(path: Path, counts=(24, 12, 12), grades: int = 4) -> Path:
    """28 px images whose mean brightness rises with the grade (0..grades-1), plus noise; ``counts`` images per
    grade and split (train, val, test)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        labels = np.arange(n) % grades
        level = 40 + 50 * labels[:, None, None] + rng.normal(0, 12, (n, 28, 28))
        arrays[f"{split}_images"] = np.clip(level, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    np.savez(path, **arrays)
    return path


def test_the_cumulative_link_gives_ordered_class_probabilities():
    link = CumulativeLink(4)
    score = torch.linspace(-6, 6, 25)[:, None]
    prob = link(score).exp()
    torch.testing.assert_close(prob.sum(1), torch.ones(25))
    theta = link.thresholds().detach()
    assert (theta.diff() > 0).all()
    torch.testing.assert_close(prob.cumsum(1)[:, :-1], torch.sigmoid(theta - score).detach())  # P(grade <= k)
    expected = (prob * torch.arange(4)).sum(1)
    assert (expected.diff() > 0).all()  # a higher score moves mass to higher grades
    torch.testing.assert_close(link(torch.zeros(1, 1)).exp(), torch.full((1, 4), 0.25))  # equal at the start
    with pytest.raises(medtl.ConfigError, match="at least 3"):
        CumulativeLink(2)


def test_the_ordinal_head_fits_graded_features():
    """A linear score plus the link learns grades that are bins of a feature (what an ordinal model assumes)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (the keep_torch_threads fixture restores it)
    x = torch.rand(400, 3)
    grade = (x[:, 0] * 5).long().clamp(max=4)
    head = medtl.Head((3, 1, 1), 5, "avg", ordinal=True)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x[:, :, None, None]), grade)
        loss.backward()
        optimizer.step()
    assert (head(x[:, :, None, None]).argmax(1) == grade).float().mean() > 0.9
    assert head.fc.out_features == 1


def test_rare_classes_get_a_warning_naming_class_weights(tmp_path):
    data = medtl.load_dataset(str(graded_npz(tmp_path / "g.npz", counts=(40, 8, 8))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_imbalance(data, class_weights=False)
    assert not caught  # 10 images per grade of 40: 25% each
    keep = np.r_[np.flatnonzero(data.train.labels != 3), np.flatnonzero(data.train.labels == 3)[:1]]
    data.train.images, data.train.labels = data.train.images[keep], data.train.labels[keep]
    with pytest.warns(MedtlWarning, match=r"'3' 1 of 31 \(3.2%\).*--class-weights weights each image's loss"):
        warn_imbalance(data, class_weights=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_imbalance(data, class_weights=True)  # already on: nothing to say
    assert not caught


def test_binary_data_is_refused_for_the_ordinal_head(tmp_path, capsys):
    from conftest import tiny_npz

    assert main(["train", *FAST_ARGS, "--data", str(tiny_npz(tmp_path / "t.npz")), "--ordinal-head",
                 "--out", str(tmp_path / "runs")]) == 2
    assert "--ordinal-head needs ordered grades" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_with_the_ordinal_head_reports_kappa_and_reloads(tmp_path):
    data = graded_npz(tmp_path / "graded.npz")
    assert main(["train", *FAST_ARGS, "--data", str(data), "--ordinal-head", "--epochs", "2", "--batch-size", "8",
                 "--out", str(tmp_path / "runs"), "--name", "ordinal"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert -1 <= metrics["test_quadratic_kappa"] <= 1 and "test_mean_absolute_error" in metrics
    assert json.loads((run / "model.json").read_text())["ordinal_head"] is True
    rows = list(csv.DictReader(open(run / "predictions_test.csv")))
    saved = np.array([[float(r[f"prob_{c}"]) for c in "0123"] for r in rows])
    np.testing.assert_allclose(saved.sum(1), 1, atol=1e-5)
    model = medtl.load_model(run)  # rebuilt with the cumulative-link head from model.json
    images = medtl.load_dataset(str(data)).test.images
    x = medtl.Preprocess(32, tuple(model.spec.mean), tuple(model.spec.std), augment=False)(images)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).softmax(1).numpy(), saved, atol=1e-5)
