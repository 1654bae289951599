"""Successive halving (``medtl search --scheduler asha``): the rule on a rung, and a search whose stopped runs are
paused resumably while the survivor ends exactly as an uninterrupted run."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import tiny_npz

from medtl.compare import LocalExecutor, build_grid, fit_run
from medtl.compare.halving import Halving, history, score, successive_halving
from medtl.config import TrainConfig
from medtl.evaluation.noise import noise_of
from medtl.rundir import RunDir


def test_rungs_and_the_rule_match_ashas():
    assert Halving(15, 3, 2).milestones == [3, 6, 12]  # Ray's ASHAScheduler(max_t=15, grace_period=3, rf=2)
    assert Halving(15, 3, 3).milestones == [3, 9]
    assert Halving(3, 3, 2).milestones == []
    scores = {"a": 0.9, "b": 0.7, "c": 0.8, "d": 0.6, "e": 0.85}
    assert Halving(15).survivors(scores) == ["a", "c", "e"]  # >= the median: ceil(5/2)
    assert Halving(15, eta=3).survivors(scores) == ["a", "e"]


def test_scheduler_and_executor_options_are_refused_where_they_do_not_apply(tmp_path, capsys, monkeypatch):
    from medtl.cli import main
    from medtl.compare.ray_executor import RayExecutor
    from medtl.errors import ConfigError

    assert main(["search", "--grace-epochs", "2", "--out", str(tmp_path)]) == 2
    assert "options of --scheduler asha" in capsys.readouterr().err
    assert main(["compare", "--address", "auto", "--out", str(tmp_path)]) == 2
    assert "--address applies only with --executor ray" in capsys.readouterr().err
    assert main(["compare", "--executor", "ray", "--workers", "2", "--out", str(tmp_path)]) == 2
    assert main(["search", "--scheduler", "asha", "--cut", "auto", "--out", str(tmp_path)]) == 2
    assert "drop --cut auto" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"medtl\[ray\]"):
        list(RayExecutor().map(str, [1]))


def test_a_rung_keeps_the_best_cut_when_it_sits_inside_the_validation_noise():
    """The miss of issue 26: the eventual best cut 0.0002 below the rung's median on 78 validation images."""
    labels = np.r_[np.ones(57), np.zeros(21)].astype(int)  # BreastMNIST's validation split: 57 benign, 21 malignant
    error = noise_of("auroc", labels, "binary")
    scores = {"stem": 0.60, "blocks.1": 0.70, "blocks.3": 0.8500, "blocks.4.1": 0.8498, "blocks.5": 0.90,
              "blocks.6": 0.95}  # the median is 0.8499
    assert "blocks.4.1" not in Halving(15, noise=0).survivors(scores, error)  # ASHA as published stops it
    assert "blocks.4.1" not in Halving(15).survivors(scores)  # no noise model given: the published rule
    kept = Halving(15).survivors(scores, error)  # one standard error (about 0.05 here) below the median
    assert kept == ["blocks.3", "blocks.4.1", "blocks.5", "blocks.6"]  # still a cut: 0.70 is far outside the noise
    assert 0.04 < Halving(15).band(scores, error) < 0.06
    assert Halving(15, noise=4).survivors(scores, error) == ["blocks.1", "blocks.3", "blocks.4.1", "blocks.5",
                                                             "blocks.6"]


def test_noise_band_is_an_option_of_asha_and_not_negative(tmp_path, capsys):
    from medtl.cli import main

    assert main(["search", "--noise-band", "0", "--out", str(tmp_path)]) == 2
    assert "--noise-band are options of --scheduler asha" in capsys.readouterr().err
    assert main(["search", "--scheduler", "asha", "--noise-band", "-1", "--out", str(tmp_path)]) == 2
    assert "--noise-band is a number of standard errors" in capsys.readouterr().err


@pytest.mark.slow
def test_halving_pauses_the_worse_cuts_and_the_survivor_ends_as_if_never_paused(tmp_path):
    base = TrainConfig(data=str(tiny_npz(tmp_path / "tiny.npz")), image_size=32, epochs=3, batch_size=8, threads=1,
                       augment=False, report=False, bootstrap=0, checkpoint_every=1e6).validate()
    cuts = ["stem", "blocks.0", "blocks.1", "blocks.2"]
    runs = build_grid(base, ["truncated"], cuts, [0], None, tmp_path / "asha")
    candidates = {r.cut: [r] for r in runs}
    plan = Halving(3, grace=1, eta=2)
    stopped = successive_halving(candidates, plan, "auprc", LocalExecutor())
    at_one = {cut: score(group, 1, "auprc") for cut, group in candidates.items()}
    first = plan.survivors(at_one)
    assert {c for c, m in stopped.items() if m == 1} == set(cuts) - set(first)
    finished = [c for c, m in stopped.items() if m is None]
    assert len(finished) >= 1 and set(finished) <= set(first)
    for cut, m in stopped.items():
        rd = RunDir(candidates[cut][0].run_dir)
        assert [row["epoch"] for row in history(candidates[cut][0])] == list(range(1, (m or 3) + 1))
        assert rd.finished == (m is None) and rd.resumable  # a stopped run is paused, with its checkpoint
    # the survivor was paused after epochs 1 and 2 and resumed: it must end exactly as an uninterrupted run
    survivor = candidates[finished[0]][0]
    alone = build_grid(base, ["truncated"], [finished[0]], [0], None, tmp_path / "alone")[0]
    fit_run(alone)
    paused, straight = RunDir(survivor.run_dir).metrics(), RunDir(alone.run_dir).metrics()
    for key in ("test_auroc", "test_auprc", "test_accuracy", "val_auprc", "best_epoch"):
        assert paused[key] == straight[key], key
    assert json.loads((RunDir(alone.run_dir) / RunDir.METRICS).read_text())["epochs_run"] == 3
