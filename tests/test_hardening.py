"""Hostile input to every command (issue 21): each case ends in a clear message (exit status 2, naming the path or
option) before any work and with nothing half-written, or behaves as the user would expect; no traceback, no hang.

The run most cases need is made without training (an untrained model saved as a run would save it, on a 16-image
data set, so that its batch size exceeds its training split): the checks under test happen before or beside the
model's use, so its weights do not matter, and the module stays fast.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, ROOT, noise, save, tiny_npz

import medtl
from medtl.cli import main
from medtl.config import TrainConfig
from medtl.model import build_classifier
from medtl.rundir import RunDir


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """An untrained run directory (model.safetensors, model.json, config.yaml) of EfficientNet-Lite0 cut at blocks.2,
    32 px, on a 16/8/8-image npz (batch size 64: more than the training split)."""
    tmp = tmp_path_factory.mktemp("hardening")
    data = medtl.load_dataset(str(tiny_npz(tmp / "tiny.npz")))
    cfg = TrainConfig(data=str(tmp / "tiny.npz"), **{k: v for k, v in FAST.items() if k != "threads"})
    model = build_classifier(cfg.backbone, data.num_classes, cut=cfg.cut, weights=None, in_chans=data.in_chans,
                             image_size=cfg.image_size, classes=data.classes, task=data.task)
    model.spec.read_size = 28
    path = RunDir(tmp / "run")
    path.path.mkdir()
    path.save_model(model)
    path.save_config(cfg)
    return path.path


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pngs")
    for i in range(5):
        save(folder / f"{i}.png", noise(i, (28, 28)))
    return folder


def copy_run(run: Path, to: Path, **spec) -> Path:
    """A copy of ``run`` whose model.json has the values ``spec``."""
    shutil.copytree(run, to)
    values = json.loads((to / "model.json").read_text())
    (to / "model.json").write_text(json.dumps({**values, **spec}))
    return to


def fails(capsys, *args: str) -> str:
    """Run ``medtl ARGS``: it must exit with status 2 and a message, no traceback; returns the message."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("medtl: error: ") and "Traceback" not in err, err
    return err


def refused_flag(capsys, *args: str) -> str:
    """``medtl ARGS`` refused by the argument parser (status 2) for a value of a flag; returns its message."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    return capsys.readouterr().err


# ---- tracebacks and hangs -------------------------------------------------------------------------------------------
def test_predict_into_an_existing_folder_names_it(run, pngs, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    err = fails(capsys, "predict", str(run), str(pngs), "--out", str(tmp_path / "out"), "--quiet")
    assert f"--out {tmp_path / 'out'} is a folder" in err and "predictions.csv" in err
    assert not any((tmp_path / "out").iterdir()) and [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("args, flag", [
    (["predict", "RUN", "x.png", "--batch-size", "0"], "--batch-size"),
    (["predict", "RUN", "x.png", "--threads", "-1"], "--threads"),
    (["evaluate", "RUN", "--threads", "0"], "--threads"),
    (["ensemble", "RUN", "RUN", "--out", "e", "--threads", "-2"], "--threads"),
    (["ensemble", "RUN", "RUN", "--out", "e", "--bootstrap", "-1"], "--bootstrap"),
    (["cuts", "--backbone", "resnet18", "--in-chans", "0"], "--in-chans"),
    (["explain", "RUN", "--images", "0"], "--images"),
    (["compare", "--workers", "0"], "--workers"),
    (["search", "--reduction-factor", "1", "--scheduler", "asha"], "--reduction-factor"),
    (["data", "check", "d", "--threshold", "0"], "--threshold"),
])
def test_numeric_flags_of_every_command_are_checked_as_they_are_parsed(args, flag, capsys):
    err = refused_flag(capsys, *args)
    assert f"argument {flag}: it must be" in err and "Traceback" not in err


def test_export_checks_its_destination_before_exporting(run, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    err = fails(capsys, "export", str(run), "--out", str(tmp_path / "file"))
    assert f"--out {tmp_path / 'file'} exists and is not a folder" in err
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder read-only as a user sees it
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != read_only and real(p, mode, **kw))
    monkeypatch.setattr("medtl.deploy.export.load_model", lambda *a: pytest.fail("the export started"))
    err = fails(capsys, "export", str(run), "--out", str(read_only / "onnx"))
    assert str(read_only) in err and "not writable" in err and not any(read_only.iterdir())


def test_data_check_checks_its_destination_before_reading(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr("medtl.data.check.load_dataset", lambda *a, **k: pytest.fail("the data was read"))
    err = fails(capsys, "data", "check", "breastmnist", "--out", str(tmp_path / "file"))
    assert f"--out {tmp_path / 'file'} exists and is not a folder" in err
    assert (tmp_path / "file").read_text() == "x"


def test_an_unreachable_ray_cluster_fails_in_seconds_naming_the_address(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.run([sys.executable, "-m", "medtl", "compare", "--executor", "ray", "--address", address,
                           "--strategies", "truncated", "--seeds", "0", "--out", str(tmp_path / "grid")],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"cannot reach the Ray cluster at --address {address}" in proc.stderr
    assert not (tmp_path / "grid").exists()


def test_ray_init_leaves_the_commands_sigterm_handler(monkeypatch, tmp_path):
    """ray.init makes SIGTERM a sys.exit, which a process blocked in Ray's C++ never runs: the command's own
    handler (an orderly stop) must be back once Ray is up."""
    import types

    from medtl.compare import ray_executor

    def init(**kwargs):
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(signal.SIGTERM))

    fake_ray = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    tuner = types.SimpleNamespace(fit=lambda: [])
    fake_tune = types.SimpleNamespace(Tuner=lambda *a, **k: tuner, with_resources=lambda f, r: f,
                                      RunConfig=lambda **k: None, FailureConfig=lambda **k: None)
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setattr(ray_executor, "_tune", lambda: fake_tune)

    def ours(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        ray_executor.RayExecutor(storage=tmp_path)._fit(lambda config: None, {})
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- weak cases -----------------------------------------------------------------------------------------------------
def test_an_unknown_timm_name_says_how_to_list_them(capsys):
    err = fails(capsys, "cuts", "--backbone", "timm:nope")
    assert "Valid: ." not in err and "timm.list_models" in err and "medtl backbones" in err


def test_a_hostile_backbone_in_model_json_is_neither_listed_nor_advised(run, tmp_path, capsys):
    evil = "timm:hf-hub:attacker/evil"
    hostile = copy_run(run, tmp_path / "hostile", backbone=evil)
    err = fails(capsys, "evaluate", str(hostile))
    assert "Valid: ." not in err and "timm.list_models" in err
    err = fails(capsys, "train", "--data", str(tiny_npz(tmp_path / "d.npz")), "--weights", str(hostile),
                "--backbone", "efficientnet_lite0", "--epochs", "1", "--out", str(tmp_path / "runs"))
    assert f"--backbone {evil}" not in err and "does not know that backbone" in err


def test_predict_that_predicts_nothing_fails_and_writes_nothing(run, tmp_path, capsys):
    for i in range(3):
        (tmp_path / "in" / f"{i}.png").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    err = fails(capsys, "predict", str(run), str(tmp_path / "in"), "--skip-bad-images", "--out",
                str(tmp_path / "p.csv"), "--quiet")
    assert "none of the 3 file(s) could be read" in err and str(tmp_path / "in" / "0.png") in err
    assert not (tmp_path / "p.csv").exists() and not list(tmp_path.glob(".p.csv.*"))


def test_model_json_values_are_bounded_like_options(run, pngs, tmp_path, capsys):
    huge = copy_run(run, tmp_path / "huge", image_size=100_000)
    err = fails(capsys, "predict", str(huge), str(pngs), "--out", str(tmp_path / "p.csv"), "--quiet")
    assert "image_size must be >= 1 and <= 2048, got 100000" in err and "too small" not in err


def test_ensemble_names_what_differs_between_the_members_data(run, tmp_path, capsys):
    members = []
    for seed, digest in ((0, "aa"), (1, "bb")):
        member = RunDir(copy_run(run, tmp_path / f"s{seed}"))
        member.save_config(TrainConfig(**{**member.load_config().to_dict(), "seed": seed}))
        member.write_metrics({"data": "x.csv", "data_fingerprint": {"train": digest, "val": digest, "test": digest}})
        members.append(str(member))
    err = fails(capsys, "ensemble", *members, "--out", str(tmp_path / "ens"), "--no-report")
    assert "their data differ by the seed of the drawn splits, 1 vs 0, from --seed (no --split-seed)" in err
    assert "'x.csv' vs 'x.csv'" not in err


def test_data_check_on_files_outside_class_folders_says_so(tmp_path, capsys):
    for i in range(4):
        save(tmp_path / "flat" / f"{i}.png", noise(i))
    err = fails(capsys, "data", "check", str(tmp_path / "flat"))
    assert "4 image file(s) (e.g. 0.png) sit directly in" in err and "outside class folders" in err


def test_explain_says_when_it_explains_fewer_images_than_asked(run, tmp_path, capsys):
    assert main(["explain", str(run), "--images", "100000", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "--images 100000: the test split of " in err and "has 8 images; explaining all 8." in err
    assert "fewer than the batch size" not in err  # a training-time warning: explain trains nothing


def test_evaluate_prints_no_training_time_warning(run, capsys):
    assert main(["evaluate", str(run)]) == 0
    assert "fewer than the batch size" not in capsys.readouterr().err


def test_predict_csv_follows_the_umask_and_progress_is_one_line_off_a_terminal(run, pngs, tmp_path, capsys):
    mask = os.umask(0o027)
    try:
        assert main(["predict", str(run), str(pngs), "--out", str(tmp_path / "p.csv"), "--batch-size", "2"]) == 0
    finally:
        os.umask(mask)
    from medtl.files import UMASK

    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o666 & ~UMASK
    err = capsys.readouterr().err  # not a terminal: no carriage-return redraws, one line at the end
    assert "\r" not in err and err.count("predict: 5/5 img") == 1


def test_progress_off_a_terminal_is_one_line_per_epoch(capsys):
    from medtl.progress import LineProgress, progress

    bar = progress(total=6, disable=False, unit="step")
    assert isinstance(bar, LineProgress)
    with bar:
        for epoch in (1, 2):
            bar.set_description(f"epoch {epoch}/2")
            bar.update(3)
            bar.set_postfix(loss=f"{0.5 / epoch:.4f}", refresh=False)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[:2] for line in lines] == [["epoch 1/2: 3/6 step", " loss 0.5000"],
                                                       ["epoch 2/2: 6/6 step", " loss 0.2500"]]
