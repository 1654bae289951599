"""No silent wrong numbers on the run side (issue #10): `evaluate RUN` scores exactly the run's test images, a resume
continues only what was checkpointed, every option is validated before a run directory exists, untrusted run
directories never reach the network, and interruptions say what to do."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import medtl
from medtl.cli import main
from medtl.config import TrainConfig
from medtl.errors import ConfigError, DataError
from medtl.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "efficientnet_lite0", "--cut", "blocks.1", "--image-size", "32", "--epochs", "2",
        "--threads", "1", "--quiet", "--weights", "none", "--batch-size", "8"]


def folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """``root/<a|b>/<i>.png``: random 12 px images with random labels (no given splits)."""
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def train(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "runs"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 0
    return max(out.iterdir(), key=lambda p: p.stat().st_mtime)


@pytest.mark.slow
def test_evaluate_scores_exactly_the_runs_own_test_split(tmp_path: Path) -> None:
    """Seed 5 on a folder without given splits: `evaluate RUN` draws the run's split again (not seed 0's)."""
    run = train(tmp_path, "--data", str(folder(tmp_path / "data")), "--seed", "5")
    saved = json.loads((run / "metrics.json").read_text())
    again = medtl.evaluate(run)
    assert {k: again[k] for k in again} == {k: saved[f"test_{k}"] for k in again}
    # the run's record says which images those were; changed data is refused, not silently scored
    (tmp_path / "data" / "a" / "0.png").unlink()
    with pytest.raises(DataError, match="not the one .* was tested on"):
        medtl.evaluate(run)


@pytest.mark.slow
def test_resume_refuses_an_edited_config_and_changed_flags_but_extends_epochs(tmp_path: Path, capsys) -> None:
    run = train(tmp_path, "--data", str(folder(tmp_path / "data")), "--seed", "1", "--checkpoint-every", "0")
    config = run / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("seed: 1", "seed: 2"))
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "seed: 1 -> 2" in capsys.readouterr().err
    config.write_text(original)
    assert main(["train", "--resume", str(run), "--lr", "0.5", "--quiet"]) == 2
    assert "lr cannot change" in capsys.readouterr().err
    before = json.loads((run / "metrics.json").read_text())
    assert before["epochs_run"] == 2
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    after = json.loads((run / "metrics.json").read_text())
    assert after["epochs_run"] == 3 and "epochs: 3" in config.read_text()
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.slow
def test_resume_refuses_other_data(tmp_path: Path, capsys) -> None:
    data = folder(tmp_path / "data")
    run = train(tmp_path, "--data", str(data), "--checkpoint-every", "0", "--epochs", "3")
    state, best = RunDir(run).load_checkpoint()
    state.done, state.epoch = False, 1
    RunDir(run).save_checkpoint(state, best)
    folder(data, seed=9)  # same names, other pixels
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "changed since it was checkpointed" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "inf"], "lr must be a finite number"),
    (["--weight-decay", "nan"], "weight_decay must be a finite number"),
    (["--label-smoothing", "5"], "label_smoothing must be >= 0 and < 1"),
    (["--threads", "-1"], "threads must be >= 1"),
    (["--crop-scale", "2,3"], "crop_scale must be > 0 and <= 1"),
    (["--split", "nan,0,1"], "split must be a finite number"),
    (["--seed", "-5"], "seed must be >= 0"),
    (["--image-size", "100000"], "image_size must be >= 1 and <= 2048"),
    (["--name", "a/b"], "must be a plain directory name"),
    (["--backbone", "timm:hf-hub:attacker/evil"], "unknown timm architecture"),
    (["--backbone", "torchvision:nope"], "unknown torchvision architecture"),
])
def test_bad_options_exit_2_before_a_run_directory_exists(flags, message, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert main(["train", *TINY, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())


def test_cuts_of_an_unknown_library_model_is_a_clear_error(capsys) -> None:
    assert main(["cuts", "--backbone", "torchvision:nope"]) == 2
    assert "unknown torchvision architecture 'nope'" in capsys.readouterr().err


def test_out_that_cannot_be_a_directory_is_a_clear_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", *TINY, "--out", str(blocker), "--data", str(folder(tmp_path / "d"))]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_yaml_aliases_and_huge_config_files_are_refused(tmp_path: Path) -> None:
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text('a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
                      'c: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n')
    with pytest.raises(ConfigError, match="aliases .* are not allowed"):
        TrainConfig.load(laughs)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (2 << 20))
    with pytest.raises(ConfigError, match="at most"):
        TrainConfig.load(huge)


def test_config_metadata_drives_identity_and_saving() -> None:
    a, b = TrainConfig(), TrainConfig(threads=1, compile=True, out="elsewhere", checkpoint_every=5)
    assert a.fingerprint() == b.fingerprint()  # run-only options do not make another run
    assert a.fingerprint() != TrainConfig(lr=0.01).fingerprint()
    assert "trust_pickle" not in yaml.safe_load(TrainConfig(trust_pickle=True).to_yaml())


def test_options_added_later_leave_grid_names_and_checkpoints_valid() -> None:
    """A grid run's name hashes only the options that differ from their defaults, and a checkpoint written before
    an option existed resumes as if it had held the option's default: adding an option does not orphan the runs of
    every existing grid (as it did while every option was hashed)."""
    from medtl.experiment import _changed_options

    cfg = TrainConfig(lr=0.01, seed=3)
    assert cfg.fingerprint() == hashlib.sha1(json.dumps({"lr": 0.01, "seed": 3}).encode()).hexdigest()
    older = {k: v for k, v in cfg.identity().items() if k != "start_size"}  # written before --start-size existed
    assert _changed_options(older, cfg) == []
    assert _changed_options(older, replace(cfg, start_size=32)) == ["start_size: None -> 32"]
    assert _changed_options({**cfg.identity(), "lr": 0.1}, cfg) == ["lr: 0.1 -> 0.01"]


def test_compare_and_search_refuse_the_options_they_set_themselves(tmp_path: Path, capsys) -> None:
    assert main(["compare", "--cut", "blocks.3", "--strategies", "full", "--out", str(tmp_path)]) == 2
    assert "--cut: --cuts" in capsys.readouterr().err
    assert main(["compare", "--seed", "7", "--out", str(tmp_path)]) == 2
    assert "--seed: --seeds" in capsys.readouterr().err
    assert main(["search", "--strategy", "full", "--out", str(tmp_path)]) == 2
    assert "--strategy: --strategies" in capsys.readouterr().err
    study = tmp_path / "study.yaml"
    study.write_text("cut: blocks.3\n")
    assert main(["compare", "--config", str(study), "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "runs").exists()


def test_model_json_with_wrong_types_or_foreign_backbones_is_refused(tmp_path: Path) -> None:
    model = medtl.build_classifier("efficientnet_lite0", 2, cut="blocks.1", weights=None, in_chans=1, image_size=32)
    medtl.save_model(model, tmp_path)
    spec = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**spec, "image_size": "32"}))
    with pytest.raises(ConfigError, match="image_size has the wrong type"):
        medtl.load_model(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({**spec, "backbone": "timm:hf-hub:attacker/evil"}))
    with pytest.raises(ConfigError, match="unknown timm architecture"):
        medtl.load_model(tmp_path)


def test_artefacts_follow_the_umask_and_the_lock_is_removed(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "x")
    with run.lock():
        run.save_config(TrainConfig(out="~/somewhere"))
        assert (run / RunDir.LOCK).exists()
    assert not (run / RunDir.LOCK).exists()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((run / RunDir.CONFIG).stat().st_mode) == 0o666 & ~mask


def test_out_with_a_tilde_means_the_home_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    run = RunDir.create("~/runs", "x")
    assert run.path.parent == tmp_path / "home" / "runs" and not (tmp_path / "~").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_checkpoints_and_names_itself(sig, tmp_path: Path) -> None:
    data = folder(tmp_path / "data", per_class=200)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "medtl", "train", *TINY, "--epochs", "50", "--data", str(data),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out.glob("*/history.csv")):  # an epoch has finished
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    (run,) = out.iterdir()
    assert proc.returncode == 130, err
    assert f"continue with `medtl train --resume {run}`" in err and (run / RunDir.CHECKPOINT).is_file()
    assert not (run / RunDir.LOCK).exists()


@pytest.mark.slow
def test_a_stop_asked_for_in_the_last_epoch_finishes_the_run_then_stops(tmp_path: Path) -> None:
    """SIGTERM during a run's last epoch: the run completes (metrics written) and the command still stops, so a
    grid does not go on to its next run (it once did: the request was dropped with the finished epoch)."""
    from medtl.cli import _interrupted
    from medtl.experiment import start

    cfg = TrainConfig(backbone="efficientnet_lite0", cut="blocks.1", image_size=32, epochs=2, threads=1, report=False,
                      bootstrap=0, out=str(tmp_path / "runs"))
    last = lambda row: row["epoch"] < 2 or signal.raise_signal(signal.SIGTERM) or True  # noqa: E731
    with pytest.raises(KeyboardInterrupt) as stopped:
        start(cfg, verbose=False, report=last)
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "metrics.json").is_file() and getattr(stopped.value, "finished", False)
    assert "its results are complete" in _interrupted("train", stopped.value)
    assert "run the same `medtl compare` command again" in _interrupted("compare", stopped.value)


def test_interruption_before_a_run_exists_offers_no_resume() -> None:
    from medtl.cli import _interrupted

    assert "--resume" not in _interrupted("train", KeyboardInterrupt())
    assert "run the same `medtl compare` command again" in _interrupted("compare", KeyboardInterrupt())


@pytest.mark.parametrize("labels, message", [
    ([[0], [1], [np.nan], [1]], "train_labels must hold whole-number class indices; found NaN"),
    ([["a"], ["b"], ["a"], ["b"]], "train_labels must hold whole-number class indices"),
    ([[0], [1], [1]], "train_images holds 4 images but train_labels 3 labels"),
])
def test_npz_labels_that_are_not_indices_name_the_file(labels, message, tmp_path: Path, capsys) -> None:
    path = tmp_path / "d.npz"
    images = np.zeros((4, 8, 8), np.uint8)
    np.savez(path, **{f"{s}_images": images for s in ("train", "val", "test")},
             **{f"{s}_labels": np.array(labels) for s in ("train", "val", "test")})
    assert main(["train", *TINY, "--data", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err
