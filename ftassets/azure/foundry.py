"""Fine-tuning open models of the Azure AI Foundry catalog (for example Phi-4-mini-instruct from the ``azureml``
registry) with azure-ai-ml's ``create_finetuning_job``, from the same chat JSONL as Azure OpenAI fine-tuning.

The ``foundry_sft`` lifecycle of a model entry (``fine_tune_and_serve``), each step through azure-ai-ml's
``MLClient`` on the workspace of ``azure_ml`` in azure.yaml: export the chat JSONL; build the job
(``finetuning_job``; ``job._to_rest_object().as_dict()`` is the exact REST body, offline); submit it and follow
it to a terminal status (``submit_and_wait``); create a serverless endpoint for the registered fine-tuned
model, tagged ``managed-by: ftassets``, which bills hosting per hour until ``azure_teardown`` deletes it.
Evaluation calls the endpoint's OpenAI-compatible chat-completions route with a key fetched from
``listKeys`` when needed (``serverless_target``); the key is never written down.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ftassets.azure.deployments import MANAGED_TAG, MANAGED_VALUE, DeploymentRecord
from ftassets.azure.finetuning import CloudFineTune, FineTuneOutcome, export_chat_jsonl
from ftassets.config import ProjectConfig
from ftassets.config.schemas import AzureFile
from ftassets.endpoints import ApiTarget, require_variables

TASK_TYPES = {"chat_completion": "ChatCompletion", "text_completion": "TextCompletion"}
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")


def finetuning_job(
    recipe: Any,
    training_data: Path | str,
    validation_data: Path | str,
    display_name: str | None = None,
    tags: dict[str, str] | None = None,
):
    """The ``CustomModelFineTuningJob`` of a ``foundry_sft`` recipe; local files are uploaded on submission."""
    import warnings

    from azure.ai.ml.finetuning import create_finetuning_job

    hyperparameters = {
        "num_train_epochs": str(recipe.epochs),
        "learning_rate": str(recipe.learning_rate),
        "per_device_train_batch_size": str(recipe.batch_size),
        **recipe.extra_hyperparameters,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = create_finetuning_job(
            model=recipe.model,
            task=TASK_TYPES[recipe.task],
            training_data=str(training_data),
            validation_data=str(validation_data),
            output_model_name_prefix=recipe.output_model_name_prefix,
            hyperparameters=hyperparameters,
            compute=recipe.compute,
            instance_types=None if recipe.compute else list(recipe.instance_types),
        )
    if display_name:
        job.display_name = display_name
    if tags:
        job.tags = {**(job.tags or {}), **tags}
    return job


def rest_body(job: Any) -> dict[str, Any]:
    return job._to_rest_object().as_dict()


def submit_and_wait(
    ml_client: Any,
    job: Any,
    log: Callable[[str], None],
    poll_interval_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    timeout_s: float = 72 * 3600,
    statuses: list[str] | None = None,
) -> Any:
    """Submit and poll until Completed; a failed or canceled job raises with its status. A run stopped while the
    job is still going cancels it, so nothing trains (and bills) unobserved."""
    created = ml_client.jobs.create_or_update(job)
    log(
        f"Foundry fine-tuning job {created.name} submitted "
        f"({job.model.path if hasattr(job.model, 'path') else job.model})"
    )
    status, started = _plain_status(created.status), time.monotonic()
    seen = statuses if statuses is not None else []
    seen.append(status)
    try:
        while status not in TERMINAL:
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"Foundry fine-tuning job {created.name} still {status} after {timeout_s / 3600:.1f} h "
                    "(azure.yaml fine_tuning.timeout_hours); cancelled"
                )
            sleep(poll_interval_s)
            latest = _plain_status(ml_client.jobs.get(created.name).status)
            if latest != status:
                seen.append(latest)
                log(f"Foundry job {created.name}: {latest}")
            status = latest
    except BaseException:
        if status not in TERMINAL:
            ml_client.jobs.begin_cancel(created.name)
            log(f"Foundry job {created.name} cancelled: this run stopped before the job finished")
        raise
    if status != "Completed":
        raise RuntimeError(
            f"Foundry fine-tuning job {created.name} ended {status}; see it in Azure AI Foundry / ML studio"
        )
    return ml_client.jobs.get(created.name)


def _plain_status(status: Any) -> str:
    """azure-ai-ml returns a ``JobStatus`` enum (``str(...)`` is ``JobStatus.COMPLETED``); its value is
    ``Completed``."""
    return str(getattr(status, "value", status))


def catalog_name(model_uri: str) -> str:
    """``azureml://registries/azureml/models/Phi-4-mini-instruct/labels/latest`` -> ``Phi-4-mini-instruct``: the
    name its price goes by (``fine_tuning.pricing`` in azure.yaml)."""
    return model_uri.split("/models/", 1)[1].split("/", 1)[0]


def endpoint_name(model_entry: str, task: str, fingerprint: str) -> str:
    """Serverless endpoint names: 3 to 32 characters, letters, digits and ``-``, starting with a letter."""
    slug = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{model_entry}-{task}").strip("-")
    return f"{slug[:23].rstrip('-')}-{fingerprint[:8]}"


def workspace_client(azure: AzureFile):
    """The ``MLClient`` of the ``azure_ml`` workspace (subscription, resource group and workspace from the
    environment)."""
    from ftassets.azure.clients import ml_client

    values = require_variables(
        [azure.subscription_id_env, azure.resource_group_env, azure.azure_ml.workspace_env],
        "fine-tuning on Azure AI Foundry (configs/azure.yaml azure_ml)",
    )
    return ml_client(azure, values[azure.azure_ml.workspace_env])


def fine_tune_and_serve(
    project: ProjectConfig,
    model: str,
    task_name: str,
    recipe: Any,
    splits: dict[str, list[dict[str, Any]]],
    out_dir: Path,
    fingerprint: str,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    work_dir: Path | None = None,
) -> CloudFineTune:
    """Train ``recipe`` (``foundry_sft``) for one cell and serve the result on a serverless endpoint; files land in
    ``out_dir``: ``train.jsonl``, ``validation.jsonl``, ``job.json``, ``deployment.json``.

    ``work_dir`` is there for the common signature of cloud fine-tunes (``lifecycle.CLOUD_FINE_TUNES``): a
    Foundry job is not followed across runs."""

    azure = project.azure
    ml = workspace_client(azure)
    files = export_chat_jsonl(splits, project.tasks[task_name].config.system_prompt, out_dir)
    settings, pricing = azure.fine_tuning, azure.fine_tuning.pricing.get(catalog_name(recipe.model))
    if pricing is None:
        log(f"no fine_tuning.pricing.{catalog_name(recipe.model)} in azure.yaml: hosting cost is unknown")
    job = finetuning_job(
        recipe,
        files["train"],
        files["validation"],
        display_name=f"ftassets {model}/{task_name}",
        tags={MANAGED_TAG: MANAGED_VALUE, "ftassets-model": model, "ftassets-task": task_name},
    )
    started, statuses = time.monotonic(), []
    done = submit_and_wait(
        ml,
        job,
        log,
        poll_interval_s=settings.poll_interval_s,
        sleep=sleep,
        timeout_s=settings.timeout_hours * 3600,
        statuses=statuses,
    )
    model_id = registered_model_id(ml, done.outputs["registered_model"])
    log(
        f"Foundry job {done.name} registered {model_id}; the job reports no trained-token count, so its training cost "
        "is left unknown (see the Azure bill)"
    )
    outcome = FineTuneOutcome(
        job_id=done.name,
        model=recipe.model,
        fine_tuned_model=model_id,
        status="succeeded",
        trained_tokens=None,
        training_file_id=str(files["train"].name),
        validation_file_id=str(files["validation"].name),
        hyperparameters=dict(job.hyperparameters or {}),
        seconds=time.monotonic() - started,
        statuses_seen=statuses,
    )
    (out_dir / "job.json").write_text(
        json.dumps({k: v for k, v in outcome.to_dict().items() if k != "events"}, indent=2, default=str)
    )
    hosting = pricing.hosting_per_hour if pricing else float("nan")
    record = serve(
        ml,
        endpoint_name(model, task_name, fingerprint),
        model_id,
        hosting_per_hour_usd=hosting,
        log=log,
        tags={"ftassets-model": model, "ftassets-task": task_name, BASE_TAG: catalog_name(recipe.model)},
    )
    (out_dir / "deployment.json").write_text(json.dumps(record.to_dict(), indent=2))
    return CloudFineTune(outcome, record, None, pricing.as_of if pricing else None)


def registered_model_id(ml: Any, output: Any) -> str:
    """``azureml://locations/<region>/workspaces/<id>/models/<name>/versions/<n>`` of a job's registered model: the
    output's own path once the job completed, else the latest version of its name."""
    if re.search(r"/models/[^/]+/versions/[^/]+$", output.path or ""):
        return output.path
    registered = ml.models.get(output.name, label="latest")
    workspace = ml.workspaces.get(ml.workspace_name)
    return (
        f"azureml://locations/{workspace.location}/workspaces/{workspace._workspace_id}/models/{registered.name}/"
        f"versions/{registered.version}"
    )


BASE_TAG, CREATED_TAG = "ftassets-base-model", "ftassets-created"
SERVERLESS_NOTE = (
    "serverless endpoint of a fine-tuned model: bills hosting per hour until deleted; run the azure_teardown job "
    "when done"
)


def serve(
    ml: Any, name: str, model_id: str, *, hosting_per_hour_usd: float, tags: dict[str, str], log: Callable[[str], None]
) -> DeploymentRecord:
    """Create (or update) serverless endpoint ``name`` for ``model_id`` and wait until it is provisioned."""
    from azure.ai.ml.entities import ServerlessEndpoint

    log(f"creating serverless endpoint {name!r} for {model_id} (hosting ${hosting_per_hour_usd:.2f}/h)")
    endpoint = ml.serverless_endpoints.begin_create_or_update(
        ServerlessEndpoint(
            name=name, model_id=model_id, tags={MANAGED_TAG: MANAGED_VALUE, CREATED_TAG: str(int(time.time())), **tags}
        ),
        polling_interval=1,
    ).result()
    if str(endpoint.provisioning_state or "succeeded").lower() != "succeeded":
        raise RuntimeError(
            f"serverless endpoint {name!r} of {model_id} ended provisioning as {endpoint.provisioning_state!r}"
        )
    log(f"serverless endpoint {name!r} is ready at {endpoint.scoring_uri}; {SERVERLESS_NOTE}")
    return DeploymentRecord(
        name=name,
        model=model_id,
        sku="Serverless",
        capacity=1,
        hosting_per_hour_usd=hosting_per_hour_usd,
        created_at=time.time(),
        account=ml.workspace_name,
        resource_group=ml.resource_group_name,
        expires=SERVERLESS_NOTE,
        kind="serverless",
        endpoint=endpoint.scoring_uri,
    )


def serverless_target(project: ProjectConfig, base: str, adapter_manifest: dict[str, Any]) -> ApiTarget:
    """The serverless endpoint a ``foundry_sft`` fine-tune serves on, as an OpenAI-compatible API target: its URL
    from the adapter's manifest, its key from ``listKeys`` now, the price of
    ``fine_tuning.pricing.<model>.inference``."""
    from ftassets.azure.settings import resolve_base

    record = adapter_manifest["deployment"]
    keys = workspace_client(project.azure).serverless_endpoints.get_keys(record["name"])
    pricing = project.azure.fine_tuning.pricing.get(catalog_name(adapter_manifest["recipe"]["model"]))
    target = resolve_base(project, base)
    return replace(
        target,
        source="openai_compatible",
        url=record["endpoint"],
        deployment=record["name"],
        model=record["name"],
        auth="api_key",
        secret=keys.primary_key,
        pricing=pricing.inference if pricing and pricing.inference else target.pricing,
    )


def teardown_serverless(
    project: ProjectConfig, names: list[str] | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Delete the serverless endpoints ftassets created (by tag; all, or the ones named), with the hosting each cost."""
    ml = workspace_client(project.azure)
    wanted, deleted = None if names is None else set(names), []
    prices = {name: p.hosting_per_hour for name, p in project.azure.fine_tuning.pricing.items()}
    for endpoint in ml.serverless_endpoints.list():
        if (endpoint.tags or {}).get(MANAGED_TAG) != MANAGED_VALUE or (
            wanted is not None and endpoint.name not in wanted
        ):
            continue
        tags = endpoint.tags or {}
        hours = (time.time() - int(tags[CREATED_TAG])) / 3600 if tags.get(CREATED_TAG, "").isdigit() else None
        price = prices.get(tags.get(BASE_TAG, ""))
        ml.serverless_endpoints.begin_delete(endpoint.name, polling_interval=1).result()
        cost = hours * price if hours is not None and price is not None else None
        log(
            f"deleted serverless endpoint {endpoint.name!r} ({endpoint.model_id})"
            + (f": up {hours:.2f} h, about ${cost:.2f} of hosting" if cost is not None else "")
        )
        deleted.append(
            {
                "name": endpoint.name,
                "model": endpoint.model_id,
                "sku": "Serverless",
                "hours": hours,
                "hosting_usd": cost,
            }
        )
    for name in sorted((wanted or set()) - {d["name"] for d in deleted}):
        log(
            f"serverless endpoint {name!r} not found among the ftassets endpoints of {ml.workspace_name}: "
            "nothing to delete"
        )
    return deleted
