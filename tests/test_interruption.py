"""Interruption loses nothing, concurrent runs never collide, and training health is watched: a real `medtl train`
killed with SIGKILL mid-run and resumed ends exactly like an uninterrupted run (in another process, so this is also
the cross-process determinism test); a NaN loss stops with the last good checkpoint kept; chance-level AUROC warns."""
from __future__ import annotations

import csv
import itertools
import json
import signal
import subprocess
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import FAST, OutputWatcher, cli_args, medtl_process, tiny_npz, wait_for

import medtl
from medtl.cli import main
from medtl.errors import ConfigError, MedtlWarning, TrainingError
from medtl.rundir import RunDir
from medtl.training import loop
from medtl.training.health import warn_if_at_chance

VERBOSE_RUN = ["--backbone", "efficientnet_lite0", "--cut", "blocks.2", "--image-size", "32", "--epochs", "3",
               "--seed", "3", "--threads", "1", "--device", "cpu", "--checkpoint-every", "0", "--no-report"]
RUN = [*VERBOSE_RUN, "--quiet"]
TINY = {**FAST, "epochs": 2, "batch_size": 8, "checkpoint_every": 0}
CHECKPOINT = RunDir.CHECKPOINT


def medtl_train(*args: str) -> subprocess.Popen:
    return medtl_process("train", *args)


def run_of(proc: subprocess.Popen) -> Path:
    out, err = proc.communicate(timeout=900)  # a guard against a hang, generous for a busy machine
    assert proc.returncode == 0, err
    return Path(out.splitlines()[0])


def history(run: Path) -> list[dict]:
    rows = list(csv.DictReader(open(run / "history.csv")))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def scores(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k.startswith(("test_", "val_")) or k in ("best_epoch", "epochs_run")}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory) -> tuple[Path, Path]:
    """(an uninterrupted run, the same run SIGKILLed in its second epoch and resumed), both finished."""
    out = tmp_path_factory.mktemp("runs")
    reference = medtl_train(*RUN, "--out", str(out / "reference"))
    victim = medtl_train(*VERBOSE_RUN, "--out", str(out / "killed"))  # not quiet: its progress lines say when
    progress = OutputWatcher(victim.stderr)
    # stderr is a pipe: one progress line per epoch, the first epoch's written as the second starts, after the first
    # epoch's checkpoint: kill mid-epoch 2
    wait_for(lambda: "epoch 1/3:" in progress.text, "the second epoch's start", proc=victim, output=progress.close)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL, progress.close()
    (checkpoint,) = (out / "killed").glob(f"*/{CHECKPOINT}")
    run = checkpoint.parent
    state, _ = RunDir(run).load_checkpoint()
    assert 1 <= state.epoch < 3 and not state.done and not (run / "metrics.json").exists()
    (run / ".checkpoint.pt.k1lledxx").write_bytes(b"half a checkpoint")  # as a kill during its write leaves it
    resumed = medtl_train("--resume", str(run), "--quiet")
    assert run_of(resumed) == run and not (run / ".checkpoint.pt.k1lledxx").exists()
    return run_of(reference), run


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(killed_and_resumed) -> None:
    reference, resumed = killed_and_resumed
    assert scores(resumed) == scores(reference)
    assert history(resumed) == history(reference)
    assert (resumed / "predictions_test.csv").read_bytes() == (reference / "predictions_test.csv").read_bytes()
    assert (resumed / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_finished_checkpoint_is_refinished_not_retrained(killed_and_resumed, capsys) -> None:
    """A run that ended but lost its artefacts gets them written again from the checkpoint, without another epoch
    of training."""
    _, run = killed_and_resumed
    expected = scores(run)
    checkpoint = (run / CHECKPOINT).read_bytes()
    for name in ("metrics.json", "model.safetensors", "history.csv"):
        (run / name).unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert scores(run) == expected and (run / "model.safetensors").is_file()
    assert (run / CHECKPOINT).read_bytes() == checkpoint


def test_concurrent_runs_never_share_a_directory(tmp_path: Path) -> None:
    start = threading.Barrier(8)

    def make(_: int) -> list[Path]:
        start.wait()
        return [RunDir.create(tmp_path, "same-name").path for _ in range(5)]

    with ThreadPoolExecutor(8) as pool:
        made = list(itertools.chain.from_iterable(pool.map(make, range(8))))
    assert len(set(made)) == 40 and all(p.is_dir() and not any(p.iterdir()) for p in made)


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    real = loop.make_loss

    def nan_from_epoch_2(data, cfg, device):
        loss_fn, calls = real(data, cfg, device), itertools.count(1)
        # 2 training batches and 1 validation call per epoch: call 4 is epoch 2's first batch
        return lambda logits, y: loss_fn(logits, y) * (float("nan") if next(calls) > 3 else 1.0)

    monkeypatch.setattr(loop, "make_loss", nan_from_epoch_2)
    with pytest.raises(TrainingError, match="epoch 2") as info:
        medtl.train(data=str(tiny_npz(tmp_path / "d.npz")), out=str(tmp_path / "runs"), verbose=False, **TINY)
    (run,) = (tmp_path / "runs").iterdir()
    assert "the last checkpoint written (if any) is kept" in str(info.value)
    state, _ = RunDir(run).load_checkpoint()
    assert state.epoch == 1 and all(torch.isfinite(v).all() for v in state.model.values())
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_absurd_learning_rate_exits_2_with_advice(tmp_path: Path, capsys) -> None:
    args = ["--data", str(tiny_npz(tmp_path / "d.npz")), "--lr", "1e30", "--out", str(tmp_path), "--quiet"]
    assert main(["train", *args, *cli_args(**TINY)]) == 2
    err = capsys.readouterr().err
    assert "lr must be > 0 and <= 10, got 1e+30" in err and "Traceback" not in err


@pytest.mark.slow
def test_chance_level_auroc_warns(tmp_path: Path) -> None:
    with pytest.warns(MedtlWarning, match=r"at chance level .* at the selected epoch .* wrong labels or normalisation"):
        medtl.train(data=str(tiny_npz(tmp_path / "d.npz", constant=True)), out=str(tmp_path), verbose=False,
                    **{**TINY, "epochs": 1})
    early = [{"val_auroc": a} for a in (0.5, 0.53, 0.47, 0.5, 0.51)]
    with pytest.warns(MedtlWarning, match="for the first 5 epochs"):
        warn_if_at_chance(early, "for the first 5 epochs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_at_chance([*early[:4], {"val_auroc": 0.6}], "for the first 5 epochs")


def test_a_run_in_training_cannot_be_resumed_by_a_second_process(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    RunDir(run).save_config(medtl.TrainConfig())
    with RunDir(run).lock():  # another process's flock looks the same: a separate open file description
        with pytest.raises(ConfigError, match="being trained by another process"):
            medtl.resume(run, verbose=False)
    assert not (run / RunDir.LOCK).exists()  # released and removed
    with pytest.raises(ConfigError, match="nothing to resume from"):  # released: the next check is reached
        medtl.resume(run, verbose=False)
