"""MLflow: one MLflow run per medtl run (nested under a grid's parent run), through ``MlflowClient`` with explicit
run ids (no process-wide active run, so grids, threads and resumes cannot cross runs).

Default store: ``sqlite:///<out>/mlflow.db`` beside the runs (MLflow's own default is a SQLite file too), its
artefacts in ``<out>/mlartifacts``; ``--track-uri`` names a lab's server instead. A server that is down must not stall
training for MLflow's default four minutes of retries, so unless the environment says otherwise a request is retried
twice and times out after 10 s (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ..optional import require
from . import final_metrics, params_of, tags_of

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
MlflowClient = require("mlflow", extra="track", purpose="--track mlflow").MlflowClient
_entities = require("mlflow.entities", extra="track", purpose="--track mlflow")
Metric, Param, RunTag = _entities.Metric, _entities.Param, _entities.RunTag
MlflowException = require("mlflow.exceptions", extra="track", purpose="--track mlflow").MlflowException
for _name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." on every new store
    logging.getLogger(_name).setLevel(logging.WARNING)

DB = "mlflow.db"
ARTIFACTS = "mlartifacts"
BATCH = 100  # MLflow's limit of params or tags per log_batch call
MAX_VALUE = 5000  # characters of a param or tag value (MLflow allows 6000 and 8000)
PARENT_TAG = "mlflow.parentRunId"  # what mlflow.start_run(nested=True) sets: the UI nests runs by it


def experiment_name() -> str:
    """``MLFLOW_EXPERIMENT_NAME`` when set (MLflow's own convention), else ``medtl``."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or "medtl"


class MlflowTracker:
    nests = True

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.run_id: str | None = None

    def open(self, directory: Path, cfg, record: dict | None, parent: str | None, name: str, tags: dict[str, str],
             store: Path, restored_through: int) -> dict:
        uri = cfg.track_uri or (record or {}).get("uri") or f"sqlite:///{(store / DB).resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        params = params_of(cfg)
        if record and record.get("uri") == uri and record.get("run_id"):  # a resumed run: its own MLflow run
            self.run_id = record["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            logged = self.client.get_run(self.run_id).data.params
            changed = {k: v for k, v in params.items() if k in logged and logged[k] != v}
            params = {k: v for k, v in params.items() if k not in logged}  # MLflow params cannot change
            if changed:
                self._tags({"medtl.changed_on_resume": "; ".join(f"{k}: {logged[k]} -> {v}"
                                                                  for k, v in changed.items())})
            experiment_id = record["experiment_id"]
        else:
            experiment_id = self._experiment(uri)
            run_tags = {**tags, "medtl.directory": str(directory.resolve()), **({PARENT_TAG: parent} if parent else {})}
            self.run_id = self.client.create_run(experiment_id, run_name=name, tags=run_tags).info.run_id
        items = [Param(k, str(v)[:MAX_VALUE]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + BATCH])
        return {"uri": uri, "experiment_id": experiment_id, "run_id": self.run_id}

    def _experiment(self, uri: str) -> str:
        """The experiment's id, created when missing (artefacts beside a local SQLite store, not in the working
        directory where MLflow would put them)."""
        name = experiment_name()
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///"):]).parent / ARTIFACTS).resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process of the grid created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _tags(self, tags: dict[str, str]) -> None:
        items = [RunTag(k, str(v)[:MAX_VALUE]) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, tags=items[i:i + BATCH])

    def log_epoch(self, row: dict) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(row["epoch"])) for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_final(self, metrics: dict, artifacts: list[Path]) -> None:
        if metrics:
            now, step = int(time.time() * 1000), int(metrics.get("best_epoch") or 0)
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                        for k, v in final_metrics(metrics).items()])
            self._tags(tags_of(metrics))
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))

    def attach(self, record: dict, artifacts: list[Path]) -> None:
        client = MlflowClient(tracking_uri=record["uri"])
        for path in artifacts:
            client.log_artifact(record["run_id"], str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)
