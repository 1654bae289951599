"""Experiment tracking (``--track mlflow``, ``--track tensorboard``): what a run, a resumed run and a compare grid
leave in MLflow (read back with ``MlflowClient``) and in TensorBoard's event files (read back with TensorBoard's
own reader), compared with the run directory; and a tracker that fails never stops a run."""
from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import pytest

import medtl
from conftest import FAST, cli_args
from medtl.cli import main
from medtl.config import TRACKERS, TrainConfig
from medtl.errors import ConfigError, MedtlWarning
from medtl import tracking
from medtl.tracking import Tracking, final_metrics, read_record

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def _history(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tracked")


@pytest.fixture(scope="module")
def resumed(out) -> tuple[Path, dict]:
    """A run tracked by both trackers, trained for one epoch, then resumed to two; with its tracking.json after the
    first part."""
    fast = {**FAST, "epochs": 1}
    run = medtl.train(out=str(out), verbose=False, track=["mlflow", "tensorboard"], **fast).run_dir
    first = read_record(run / "tracking.json")
    medtl.resume(run, epochs=2, verbose=False)
    return run, first


@pytest.mark.slow
def test_mlflow_run_equals_metrics_json_and_resume_continues_it(resumed, out):
    run, first = resumed
    record = read_record(run / "tracking.json")["mlflow"]
    assert record == first["mlflow"]  # the resumed run continued its MLflow run
    assert record["uri"] == f"sqlite:///{(out / 'mlflow.db').resolve()}"  # the default store beside the runs
    client = MlflowClient(tracking_uri=record["uri"])
    same_dir = client.search_runs([record["experiment_id"]], f"tags.`medtl.directory` = '{run.resolve()}'")
    assert [r.info.run_id for r in same_dir] == [record["run_id"]]  # one MLflow run, not two
    got = client.get_run(record["run_id"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert got.info.status == "FINISHED"
    assert got.data.metrics["test_auroc"] == metrics["test_auroc"]
    assert got.data.metrics["test_auroc_ci_low"] == metrics["test_auroc_ci"][0]
    assert got.data.metrics["best_val_auroc"] == metrics["val_auroc"]  # the selected epoch's, beside the series
    assert got.data.params["backbone"] == "efficientnet_lite0" and got.data.params["cut"] == "blocks.2"
    assert got.data.params["epochs"] == "1"  # params cannot change in MLflow: the change is a tag
    assert got.data.tags["medtl.changed_on_resume"] == "epochs: 1 -> 2"
    assert got.data.tags["medtl.data_fingerprint.test"] == metrics["data_fingerprint"]["test"]
    assert got.data.tags["medtl.provenance.versions.medtl"] == medtl.__version__
    steps = [(m.step, m.value) for m in client.get_metric_history(record["run_id"], "val_auroc")]
    assert sorted(steps) == [(int(r["epoch"]), float(r["val_auroc"])) for r in _history(run)]  # each epoch once
    artifacts = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {"MODEL_CARD.md", "metrics.json"} <= artifacts


@pytest.mark.slow
def test_tensorboard_scalars_equal_history_and_metrics(resumed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = resumed
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    history = _history(run)
    val = events.Scalars("val_auroc")
    assert [e.step for e in val] == [int(r["epoch"]) for r in history]  # epoch 2 once, after the resume
    assert [e.value for e in val] == pytest.approx([float(r["val_auroc"]) for r in history], rel=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert events.Scalars("test_auroc")[-1].value == pytest.approx(metrics["test_auroc"], rel=1e-6)  # float32


def test_a_resume_in_the_same_second_keeps_the_first_event_file(tmp_path):
    """tensorboardX names event files by the second: the resumed writer must not overwrite the first one's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from medtl.tracking.tensorboard_run import TensorBoardTracker

    for epoch, restored in ((1, 0), (2, 1)):  # both writers open well within one second
        tracker = TensorBoardTracker()
        tracker.open(tmp_path, None, {"logdir": "tb"} if restored else None, None, "run", {}, tmp_path, restored)
        tracker.log_epoch({"epoch": epoch, "val_auroc": 0.5 + epoch / 10})
        tracker.close("FINISHED")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert len(list((tmp_path / "tb").iterdir())) == 2
    assert [(e.step, round(e.value, 3)) for e in events.Scalars("val_auroc")] == [(1, 0.6), (2, 0.7)]


@pytest.mark.slow
def test_compare_grid_is_one_parent_with_its_runs_nested(out):
    from medtl.compare import compare

    base = TrainConfig(**{**FAST, "track": ["mlflow"]})
    grid = out / "grid"
    result = compare(base, ["truncated"], cuts="blocks.2", seeds=[0, 1], out=grid, plots=False)
    parent = read_record(grid / "tracking.json")["mlflow"]
    client = MlflowClient(tracking_uri=parent["uri"])
    assert client.get_run(parent["run_id"]).data.tags["medtl.kind"] == "compare"
    assert client.get_run(parent["run_id"]).info.status == "FINISHED"
    children = client.search_runs([parent["experiment_id"]], f"tags.mlflow.parentRunId = '{parent['run_id']}'")
    runs = {read_record(grid / "runs" / r["run"] / "tracking.json")["mlflow"]["run_id"]
            for r in result.records}
    assert {c.info.run_id for c in children} == runs and len(runs) == 2
    assert "table.md" in {a.path for a in client.list_artifacts(parent["run_id"])}


def test_trackers_of_config_are_the_registry():
    assert TRACKERS == tuple(tracking.TRACKERS)


def test_unknown_tracker_is_refused_before_training(capsys):
    assert main(["train", *cli_args(**FAST), "--track", "wandb"]) == 2
    assert "unknown track 'wandb'" in capsys.readouterr().err


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "medtl.tracking.tensorboard_run", raising=False)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    with pytest.raises(ConfigError, match=r'pip install "medtl\[track\]"'):
        tracking.check(TrainConfig(track=["tensorboard"]))


def test_an_unreachable_server_warns_once_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # refused at once rather than after retries
    cfg = TrainConfig(track=["mlflow"], track_uri="http://127.0.0.1:1")  # nothing listens on port 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = Tracking.open(cfg, tmp_path)
        assert tracker.observe(None) is None  # the epoch loop goes on as without tracking
        tracker.finished({"test_auroc": 0.5})
    said = [str(w.message) for w in caught if issubclass(w.category, MedtlWarning)]
    assert len(said) == 1 and "mlflow tracking failed" in said[0] and str(tmp_path) in said[0]
    assert not (tmp_path / "tracking.json").exists()


def test_final_metrics_names_are_valid_and_do_not_shadow_the_series():
    names = final_metrics({"test_auroc": 0.9, "val_auroc": 0.8, "test_auroc_ci": [0.8, 0.95], "threshold_rule": "x",
                           "test_per_class": {"normal, benign": {"f1": 0.5}}, "seed": 0, "ok": True})
    assert names == {"test_auroc": 0.9, "best_val_auroc": 0.8, "test_auroc_ci_low": 0.8, "test_auroc_ci_high": 0.95,
                     "test_per_class.normal_ benign.f1": 0.5, "seed": 0.0}


def test_track_flags_repeat_or_take_commas_and_are_saved_only_when_set(capsys):
    from medtl.cli import build_parser

    args = build_parser().parse_args(["train", "--track", "mlflow", "--track", "tensorboard,mlflow"])
    assert args.track == ["mlflow", "tensorboard", "mlflow"]  # a tracker named twice is opened once
    assert "track" not in TrainConfig().to_yaml()  # runs without tracking keep their config.yaml
    assert "track:\n- mlflow\n" in TrainConfig(track=["mlflow"]).to_yaml()  # a resumed run keeps tracking
    assert TrainConfig(track=["mlflow"]).fingerprint() == TrainConfig().fingerprint()  # not part of a run's identity
    assert main(["compare", "--track-parent", "abc", "--strategies", "truncated"]) == 2  # the grid sets it itself
    assert "the grid nests its runs under a parent run of its own" in capsys.readouterr().err
