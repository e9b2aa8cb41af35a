"""MLflow tracking: one MLflow run per (task, model) training, with the recipe, per-step and final metrics.

The store defaults to sqlite under the project's home (MLflow 3 refuses its old file store) with the
artifacts beside it; any MLflow URI works (``mlflow server``, Databricks, Azure ML). Runs are addressed
by id through ``MlflowClient`` rather than MLflow's process-global active run, so the training
process that logs steps may be another process than the one that opened the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


@dataclass(frozen=True)
class MlflowRunRef:
    """Enough to log into an open MLflow run from any process."""

    tracking_uri: str
    run_id: str


def default_tracking_uri(home: Path) -> str:
    return f"sqlite:///{(Path(home) / 'mlflow' / 'mlflow.db').resolve()}"


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested configuration as MLflow params: ``{"lora": {"r": 16}}`` -> ``{"lora.r": "16"}``."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_location: Path | None = None) -> None:
        self.tracking_uri, self.experiment, self.artifact_location = tracking_uri, experiment, artifact_location

    def _client(self):
        from mlflow import MlflowClient

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self.tracking_uri)

    def _experiment_id(self, client) -> str:
        existing = client.get_experiment_by_name(self.experiment)
        if existing is not None:
            return existing.experiment_id
        location = self.artifact_location.resolve().as_uri() if self.artifact_location else None
        return client.create_experiment(self.experiment, artifact_location=location)

    def start_run(self, name: str, tags: dict[str, str], params: dict[str, Any]) -> MlflowRunRef:
        from mlflow.entities import Param

        client = self._client()
        run = client.create_run(self._experiment_id(client), run_name=name, tags=tags)
        items = sorted(flatten(params).items())
        for start in range(0, len(items), 100):
            client.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in items[start : start + 100]])
        return MlflowRunRef(self.tracking_uri, run.info.run_id)

    def finish(
        self,
        run: MlflowRunRef,
        metrics: dict[str, float],
        artifact_dir: Path | None = None,
        artifact_path: str = "adapter",
    ) -> None:
        from mlflow.entities import Metric

        client = self._client()
        now = int(time.time() * 1000)
        client.log_batch(run.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None])
        if artifact_dir is not None:
            client.log_artifacts(run.run_id, str(artifact_dir), artifact_path)
        client.set_terminated(run.run_id, "FINISHED")

    def log_files(
        self, name: str, tags: dict[str, str], directory: Path, metrics: dict[str, float] | None = None
    ) -> MlflowRunRef:
        """One finished run holding ``directory``'s files as artifacts (a report and its figures), with metrics."""
        run = self.start_run(name, tags, {})
        self.finish(run, metrics or {}, directory, artifact_path="report")
        return run

    def fail(self, run: MlflowRunRef, reason: str) -> None:
        client = self._client()
        client.set_tag(run.run_id, "failure", reason[:5000])
        client.set_terminated(run.run_id, "FAILED")


class MlflowStepLogger(TrainerCallback):
    """Logs every Trainer log line (loss, eval_loss, learning_rate, grad_norm, ...) at its global step."""

    def __init__(self, run: MlflowRunRef) -> None:
        from mlflow import MlflowClient

        self.run, self.client = run, MlflowClient(tracking_uri=run.tracking_uri)

    def on_log(self, args, state, control, logs=None, **kwargs):
        from mlflow.entities import Metric

        if not state.is_world_process_zero:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"train/{k}" if not k.startswith("eval_") else f"eval/{k[5:]}", float(v), now, state.global_step)
            for k, v in (logs or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        if metrics:
            self.client.log_batch(self.run.run_id, metrics=metrics)
