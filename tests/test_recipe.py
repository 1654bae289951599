"""The recipe that scales with the data (epochs, patience, warm-up), the time budget, progressive resizing and the
--cut auto sample for larger data sets."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import yaml

import medtl
from conftest import FAST, tiny_npz
from medtl.analysis.autocut import sample
from medtl.cli import main
from medtl.config import TrainConfig, parse_duration
from medtl.errors import ConfigError
from medtl.training import loop
from medtl.training.recipe import EpochCost, default_epochs, resolve, size_at


@pytest.mark.parametrize("n_train, epochs", [(546, 30), (4564, 15), (5778, 12), (50_000, 5), (1, 30)])
def test_epochs_follow_the_images_seen_within_bounds(n_train, epochs):
    assert default_epochs(n_train) == epochs


def test_breastmnist_keeps_its_schedule():
    """The default run (546 training images) trains as it did before the recipe: 30 epochs, patience 10, one
    warm-up epoch."""
    cfg = resolve(TrainConfig(), 546).cfg
    assert (cfg.epochs, cfg.patience, cfg.warmup_epochs) == (30, 10, 1.0)


def test_given_values_win_and_short_runs_warm_up_briefly():
    cfg = resolve(TrainConfig(epochs=7, patience=0, warmup_epochs=2), 10_000).cfg
    assert (cfg.epochs, cfg.patience, cfg.warmup_epochs) == (7, 0, 2)
    cfg = resolve(TrainConfig(), 50_000).cfg
    assert (cfg.epochs, cfg.patience, cfg.warmup_epochs) == (5, 3, 0.25)


def test_time_limit_keeps_the_epochs_that_fit():
    cost = EpochCost(train_s=9.0, val_s=1.0)  # 10 s per epoch
    recipe = resolve(TrainConfig(time_limit="1m5s"), 546, cost)
    assert recipe.cfg.epochs == 6 and recipe.estimate_s == pytest.approx(60)
    assert "over the 1m05s time limit" in recipe.note and "1m00s" in recipe.note
    roomy = resolve(TrainConfig(time_limit="1h"), 546, cost)  # a cap, not a target: the recipe's 30 epochs
    assert roomy.cfg.epochs == 30 and "within the 1h00m time limit" in roomy.note
    tight = resolve(TrainConfig(time_limit="3s"), 546, cost)  # nothing fits: one epoch, never zero
    assert tight.cfg.epochs == 1
    huge = resolve(TrainConfig(epochs=100_000, time_limit="1h"), 546, cost)  # bisection, not a sum per candidate
    assert huge.cfg.epochs == 360


def test_time_limit_counts_cheaper_low_resolution_epochs():
    cost = EpochCost(train_s=16.0, val_s=1.0, start_train_s=1.0)
    plain = resolve(TrainConfig(image_size=128, time_limit="2m"), 546, cost).cfg.epochs
    growing = resolve(TrainConfig(image_size=128, start_size=32, time_limit="2m"), 546, cost).cfg.epochs
    assert plain == 7 and growing > plain
    grown = TrainConfig(image_size=128, start_size=32, epochs=growing)
    assert cost.run_s(growing, grown) <= 120 < cost.run_s(growing + 1, grown)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("1.5h", 5400),
                                           ("2min", 120), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "0s", "5d", "-3m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError, match="time_limit"):
        TrainConfig(time_limit=text).validate()


def test_bad_time_limit_and_start_size_exit_2_before_anything_is_made(tmp_path, capsys):
    assert main(["train", "--time-limit", "soon", "--out", str(tmp_path)]) == 2
    assert "90s, 10m or 1h30m" in capsys.readouterr().err
    assert main(["train", "--start-size", "128", "--image-size", "64", "--out", str(tmp_path)]) == 2
    assert "must not exceed image_size" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_progressive_sizes_grow_from_half_way_and_end_at_the_target():
    sizes = [size_at(e, 20, 64, 224) for e in range(1, 21)]
    assert sizes[:10] == [64] * 10 and sizes[-4:] == [224] * 4
    assert sizes == sorted(sizes) and all(s % 16 == 0 for s in sizes)
    assert [size_at(e, 5, None, 64) for e in range(1, 6)] == [64] * 5


def test_cut_auto_samples_large_sets_by_class():
    y = np.r_[np.zeros(4500, int), np.ones(1500, int)]
    index = sample(y, 2000, "binary")
    assert len(index) == 2000 and np.bincount(y[index]).tolist() == [1500, 500]
    assert np.array_equal(index, sample(y, 2000, "binary"))  # seeded
    assert sample(y[:600], 2000, "binary") is None  # small sets are scored whole


@pytest.mark.slow
def test_time_limit_and_progressive_resizing_in_a_run(tmp_path):
    """--time-limit cuts a long schedule to what fits and config.yaml records it (so --resume keeps it); with
    --start-size the first epochs train smaller; the timing probe leaves the run's result unchanged."""
    npz = tiny_npz(tmp_path / "tiny.npz")
    opts = {**FAST, "image_size": 32, "epochs": 3, "data": str(npz), "out": str(tmp_path / "runs")}
    quiet = medtl.train(verbose=False, **opts)
    probed = medtl.train(verbose=False, time_limit="1h", **opts)  # the probe runs; 3 epochs fit
    assert probed.metrics["epochs_planned"] == 3
    assert probed.metrics["test_auroc"] == quiet.metrics["test_auroc"]
    assert probed.metrics["val_auroc"] == quiet.metrics["val_auroc"]

    capped = medtl.train(verbose=False, **{**opts, "epochs": 100_000, "patience": 0, "time_limit": "3s"})
    planned = capped.metrics["epochs_planned"]
    assert 1 <= planned < 100_000 and capped.metrics["epochs_run"] <= planned
    assert yaml.safe_load((capped.run_dir / "config.yaml").read_text())["epochs"] == planned

    # patience 1 at a learning rate that cannot improve validation: early stopping still waits for the final size
    grown = medtl.train(verbose=False, **{**opts, "epochs": 6, "start_size": 16, "patience": 1, "lr": 1e-9})
    history = (grown.run_dir / "history.csv").read_text().splitlines()
    sizes = [int(line.split(",")[-1]) for line in history[1:]]
    assert history[0].endswith(",image_size") and sizes[0] == 16 and sizes[-1] == 32


@pytest.mark.slow
def test_a_run_stops_when_its_time_limit_is_spent(tmp_path, fake_clock, caplog):
    """The machine gets slower than measured: the loop's own clock stops the run after an epoch, keeping the best
    epoch so far (here every reading of the loop's clock moves 20 minutes on)."""
    fake_clock(loop, step=1200.0)
    npz = tiny_npz(tmp_path / "tiny.npz")
    with caplog.at_level(logging.WARNING, logger="medtl"):
        result = medtl.train(verbose=False, **{**FAST, "data": str(npz), "epochs": 6, "patience": 0,
                                               "time_limit": "1h", "out": str(tmp_path)})
    assert result.metrics["epochs_planned"] == 6 and result.metrics["epochs_run"] < 6
    assert "time limit is spent" in caplog.text
