"""Azure OpenAI supervised fine-tuning as the ``adapter`` of an Azure model entry.

The lifecycle, each step through the real ``openai`` SDK: export the dataset's train and validation splits
as chat JSONL; upload both (``purpose="fine-tune"``) and wait until Azure has processed them; create the
job (supervised method, ``trainingType``, seed, suffix); poll it, streaming its events to the log, until a
terminal status (Azure also reports ``pending``, which the SDK does not list: any status that is not
terminal means "keep waiting"); read ``results.csv`` (the loss curve) and the checkpoints' metrics; then
deploy the fine-tuned model through the control plane (``deployments.py``) so evaluation can call it.

A run that is interrupted while the job is still going cancels the job, so nothing trains (and bills)
unobserved.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftassets.azure.deployments import DeploymentRecord
from ftassets.training.tokenize import chat_messages

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
MIN_TRAINING_EXAMPLES = 10
RESULT_COLUMNS = (
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


class FineTuningError(RuntimeError):
    """The job failed or was cancelled, or its inputs were refused; the message carries Azure's reason."""


@dataclass
class FineTuneOutcome:
    job_id: str
    model: str
    fine_tuned_model: str
    status: str
    trained_tokens: int | None
    training_file_id: str
    validation_file_id: str | None
    hyperparameters: dict[str, Any]
    seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)
    statuses_seen: list[str] = field(default_factory=list)
    results: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    @property
    def train_loss(self) -> list[tuple[int, float]]:
        return [(int(r["step"]), r["train_loss"]) for r in self.results if r.get("train_loss") is not None]

    @property
    def val_loss(self) -> list[tuple[int, float]]:
        return [(int(r["step"]), r["valid_loss"]) for r in self.results if r.get("valid_loss") is not None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CloudFineTune:
    """What any cloud fine-tune of a cell leaves: the job, where the result is served, and what training cost."""

    outcome: FineTuneOutcome
    deployment: DeploymentRecord
    training_cost_usd: float | None
    pricing_as_of: str | None

    def manifest_facts(self) -> dict[str, Any]:
        job = self.outcome.to_dict()
        return {
            "job": {k: v for k, v in job.items() if k not in ("results", "events")},
            "deployment": self.deployment.to_dict(),
            "training_cost_usd": self.training_cost_usd,
            "pricing_as_of": self.pricing_as_of,
        }


def chat_records(rows: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """One ``{"messages": [...]}`` per example: the same conversation local training and evaluation use."""
    return [{"messages": chat_messages(row["prompt"], row["answer"], system_prompt)} for row in rows]


def export_chat_jsonl(
    splits: dict[str, list[dict[str, Any]]], system_prompt: str | None, out_dir: Path
) -> dict[str, Path]:
    """``train.jsonl`` and ``validation.jsonl`` in ``out_dir``, in Azure's chat fine-tuning format."""
    if len(splits["train"]) < MIN_TRAINING_EXAMPLES:
        raise FineTuningError(
            f"the train split has {len(splits['train'])} examples; Azure OpenAI fine-tuning needs at "
            f"least {MIN_TRAINING_EXAMPLES}: raise sizes.train of the task in tasks.yaml"
        )
    paths = {}
    for name in ("train", "validation"):
        paths[name] = out_dir / f"{name}.jsonl"
        with open(paths[name], "w") as handle:
            for record in chat_records(splits[name], system_prompt):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths


def job_request(model: str, recipe: Any, training_file: str, validation_file: str | None) -> dict[str, Any]:
    """The keyword arguments of ``fine_tuning.jobs.create`` for an ``azure_sft`` recipe."""
    hyperparameters: dict[str, Any] = {"n_epochs": recipe.epochs}
    if recipe.batch_size is not None:
        hyperparameters["batch_size"] = recipe.batch_size
    if recipe.learning_rate_multiplier is not None:
        hyperparameters["learning_rate_multiplier"] = recipe.learning_rate_multiplier
    request = {
        "model": model,
        "training_file": training_file,
        "suffix": recipe.suffix,
        "seed": recipe.seed,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        "extra_body": {"trainingType": recipe.training_type},
    }
    if validation_file:
        request["validation_file"] = validation_file
    return request


def upload(client: Any, path: Path, poll_interval_s: float, log: Callable[[str], None]) -> str:
    with open(path, "rb") as handle:
        created = client.files.create(file=(path.name, handle), purpose="fine-tune")
    log(f"uploaded {path.name} ({created.bytes} bytes) as {created.id}; waiting for Azure to process it")
    processed = client.files.wait_for_processing(created.id, poll_interval=poll_interval_s)
    if processed.status != "processed":
        raise FineTuningError(
            f"{path.name} ({created.id}) was not accepted: status {processed.status!r} "
            f"{getattr(processed, 'status_details', '') or ''}"
        )
    return created.id


def run_fine_tuning(
    client: Any,
    model: str,
    recipe: Any,
    files: dict[str, Path],
    *,
    poll_interval_s: float,
    timeout_s: float,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    resume_job_id: str | None = None,
    on_created: Callable[[str], None] = lambda job_id: None,
) -> FineTuneOutcome:
    """Upload, create the job, follow it to a terminal status, and read back its results.

    ``resume_job_id``: a job an earlier run created for the same inputs; unless it failed or was cancelled it is
    followed instead of paying for a new one (a run that stopped after training, e.g. at deployment)."""
    started = time.monotonic()
    job = client.fine_tuning.jobs.retrieve(resume_job_id) if resume_job_id else None
    if job is not None and job.status not in ("failed", "cancelled"):
        training_file, validation_file = job.training_file, job.validation_file
        log(f"following fine-tuning job {job.id} ({job.status}) that an earlier run created for these inputs")
    else:
        training_file = upload(client, files["train"], poll_interval_s, log)
        validation_file = upload(client, files["validation"], poll_interval_s, log) if files.get("validation") else None
        job = client.fine_tuning.jobs.create(**job_request(model, recipe, training_file, validation_file))
        on_created(job.id)
        log(
            f"fine-tuning job {job.id} created for {model} (trainingType {recipe.training_type}, "
            f"seed {recipe.seed}); status {job.status}"
        )
    seen_events: set[str] = set()
    events: list[dict[str, Any]] = []
    statuses = [job.status]
    try:
        while True:
            job = client.fine_tuning.jobs.retrieve(job.id)
            events += _new_events(client, job.id, seen_events, log)
            if job.status != statuses[-1]:
                statuses.append(job.status)
                log(f"job {job.id}: status {job.status}")
            if job.status in TERMINAL_STATUSES:
                break
            if time.monotonic() - started > timeout_s:
                raise FineTuningError(
                    f"job {job.id} still {job.status!r} after {timeout_s / 3600:.1f} h "
                    "(azure.yaml fine_tuning.timeout_hours); cancelled"
                )
            sleep(poll_interval_s)
    except BaseException:
        if job.status not in TERMINAL_STATUSES:
            client.fine_tuning.jobs.cancel(job.id)
            log(f"job {job.id} cancelled: this run stopped before the job finished")
        raise
    if job.status != "succeeded":
        reason = getattr(job.error, "message", None) or "no reason given"
        raise FineTuningError(f"fine-tuning job {job.id} ended {job.status}: {reason}")
    results = read_results(client, job.result_files[0]) if job.result_files else []
    checkpoints = [
        {"step": c.step_number, "model": c.fine_tuned_model_checkpoint, "metrics": _plain(c.metrics)}
        for c in client.fine_tuning.jobs.checkpoints.list(job.id)
    ]
    log(
        f"job {job.id} succeeded: {job.fine_tuned_model} ({job.trained_tokens} trained tokens, "
        f"{len(results)} result rows)"
    )
    return FineTuneOutcome(
        job_id=job.id,
        model=model,
        fine_tuned_model=job.fine_tuned_model,
        status=job.status,
        trained_tokens=job.trained_tokens,
        training_file_id=training_file,
        validation_file_id=validation_file,
        hyperparameters=_plain(job.hyperparameters),
        seconds=time.monotonic() - started,
        events=events,
        statuses_seen=statuses,
        results=results,
        checkpoints=sorted(checkpoints, key=lambda c: c["step"]),
    )


def _new_events(client: Any, job_id: str, seen: set[str], log: Callable[[str], None]) -> list[dict[str, Any]]:
    fresh = [e for e in client.fine_tuning.jobs.list_events(job_id, limit=100) if e.id not in seen]
    fresh.sort(key=lambda e: e.created_at)
    for event in fresh:
        seen.add(event.id)
        log(f"job {job_id}: {event.message}")
    return [{"created_at": e.created_at, "level": e.level, "message": e.message} for e in fresh]


def read_results(client: Any, file_id: str) -> list[dict[str, float]]:
    """``results.csv`` (step, train_loss, train_mean_token_accuracy, valid_loss, ...) as rows of floats."""
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(client.files.content(file_id).read()))
    frame = frame.apply(pd.to_numeric, errors="coerce")
    return [{k: (None if pd.isna(v) else float(v)) for k, v in row.items()} for row in frame.to_dict("records")]


def training_cost_usd(trained_tokens: int | None, price_per_1m: float | None) -> float | None:
    """Azure bills training tokens x epochs; ``trained_tokens`` already counts every epoch."""
    if trained_tokens is None or price_per_1m is None:
        return None
    return trained_tokens * price_per_1m / 1e6


def log_to_mlflow(run: Any, outcome: FineTuneOutcome) -> None:
    """Every results.csv row and checkpoint as MLflow metrics at their step, under the adapter's MLflow run."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=run.tracking_uri)
    now = int(time.time() * 1000)
    metrics = [
        Metric(
            f"train/{k.removeprefix('train_')}" if k.startswith("train_") else f"eval/{k.removeprefix('valid_')}",
            value,
            now,
            int(row["step"]),
        )
        for row in outcome.results
        for k, value in row.items()
        if k in RESULT_COLUMNS and value is not None
    ]
    metrics += [
        Metric(f"checkpoint/{k}", float(v), now, int(c["step"]))
        for c in outcome.checkpoints
        for k, v in c["metrics"].items()
        if isinstance(v, (int, float)) and k != "step"
    ]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.run_id, metrics=metrics[start : start + 1000])


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value
