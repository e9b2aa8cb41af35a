"""One cloud fine-tune of a (task, model) cell, start to finish: checks, JSONL export, the job, the deployment.

Everything that can fail without spending money (credentials of both planes, a model Azure cannot
fine-tune, too few examples) fails before the upload.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftassets.azure.clients import account_ref, management_client, openai_client
from ftassets.azure.deployments import deploy, deployment_name
from ftassets.azure.finetuning import (
    CloudFineTune,
    FineTuneOutcome,
    export_chat_jsonl,
    run_fine_tuning,
    training_cost_usd,
)
from ftassets.azure.foundry import fine_tune_and_serve, teardown_serverless
from ftassets.azure.settings import resolve_base
from ftassets.config import ProjectConfig
from ftassets.config.api_entries import check_fine_tunable, model_family
from ftassets.training.recipes import AzureSftRecipe, FoundrySftRecipe


def fine_tune_and_deploy(
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
    """Train the cloud ``recipe`` for one cell and serve the result, through the lifecycle of the recipe's class
    (``CLOUD_FINE_TUNES``): Azure OpenAI fine-tuning and a deployment (``azure_sft``), or Azure AI Foundry
    fine-tuning and a serverless endpoint (``foundry_sft``, ``foundry.py``)."""
    fine_tune = CLOUD_FINE_TUNES[type(recipe)]
    return fine_tune(project, model, task_name, recipe, splits, out_dir, fingerprint, log, sleep, work_dir)


def fine_tune_azure_openai(
    project: ProjectConfig,
    model: str,
    task_name: str,
    recipe: AzureSftRecipe,
    splits: dict[str, list[dict[str, Any]]],
    out_dir: Path,
    fingerprint: str,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    work_dir: Path | None = None,
) -> CloudFineTune:
    """Train ``recipe`` on Azure OpenAI for one cell and deploy the result; files land in ``out_dir``:
    ``train.jsonl``, ``validation.jsonl``, ``results.csv``, ``events.json``, ``job.json``, ``deployment.json``.

    ``work_dir`` remembers the job until the deployment is done, so a run that stopped in between (killed,
    deployment refused) follows the same job next time instead of training again."""
    base = project.base_of(model)
    spec = project.azure.deployments[project.bases[base].deployment]
    check_fine_tunable(spec.model, f"{project.config_dir / 'models.yaml'}: models.{model}.base")
    target = resolve_base(project, base)
    account = account_ref(project.azure)
    files = export_chat_jsonl(splits, project.tasks[task_name].config.system_prompt, out_dir)
    settings = project.azure.fine_tuning
    training_model = f"{spec.model}-{spec.model_version}" if spec.model_version else spec.model
    marker = Path(work_dir) / "cloud_job.json" if work_dir else None
    earlier = json.loads(marker.read_text()) if marker and marker.exists() else {}

    def remember(job_id: str) -> None:
        if marker:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"fingerprint": fingerprint, "job_id": job_id}))

    with openai_client(target) as client:
        outcome = run_fine_tuning(
            client,
            training_model,
            recipe,
            files,
            poll_interval_s=settings.poll_interval_s,
            timeout_s=settings.timeout_hours * 3600,
            log=log,
            sleep=sleep,
            on_created=remember,
            resume_job_id=earlier.get("job_id") if earlier.get("fingerprint") == fingerprint else None,
        )
    _write_results(out_dir, outcome)
    pricing = settings.pricing.get(model_family(spec.model))
    hosting = (
        0.0 if recipe.deployment_sku == "DeveloperTier" else (pricing.hosting_per_hour if pricing else float("nan"))
    )
    if pricing is None:
        log(f"no fine_tuning.pricing.{model_family(spec.model)} in azure.yaml: training and hosting cost are unknown")
    with management_client(project.azure, account) as mgmt:
        record = deploy(
            mgmt,
            account,
            deployment_name(model, task_name, fingerprint),
            outcome.fine_tuned_model,
            sku=recipe.deployment_sku,
            capacity=recipe.deployment_capacity,
            hosting_per_hour_usd=hosting,
            tags={"ftassets-model": model, "ftassets-task": task_name},
            log=log,
        )
    (out_dir / "deployment.json").write_text(json.dumps(record.to_dict(), indent=2))
    if marker:
        marker.unlink(missing_ok=True)
    cost = training_cost_usd(outcome.trained_tokens, pricing.training_per_1m_tokens if pricing else None)
    return CloudFineTune(outcome, record, cost, pricing.as_of if pricing else None)


CLOUD_FINE_TUNES: dict[type, Callable[..., CloudFineTune]] = {
    AzureSftRecipe: fine_tune_azure_openai,
    FoundrySftRecipe: fine_tune_and_serve,
}
"""The lifecycle of each cloud recipe class; a new cloud method adds its own here."""


def _write_results(out_dir: Path, outcome: FineTuneOutcome) -> None:
    import pandas as pd

    if outcome.results:
        pd.DataFrame(outcome.results).to_csv(out_dir / "results.csv", index=False)
    (out_dir / "events.json").write_text(json.dumps(outcome.events, indent=2))
    (out_dir / "job.json").write_text(
        json.dumps({k: v for k, v in outcome.to_dict().items() if k != "events"}, indent=2, default=str)
    )


def hosting_price(project: ProjectConfig) -> Callable[[str], float | None]:
    """Hosting USD per hour of a deployed fine-tune, by its model id (``gpt-4.1-mini-2025-04-14.ft-...``)."""

    def price(model: str) -> float | None:
        pricing = project.azure.fine_tuning.pricing.get(model_family(model))
        return pricing.hosting_per_hour if pricing else None

    return price


def teardown_deployments(
    project: ProjectConfig, names: list[str] | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Delete what ftassets left billing: the Azure OpenAI account's fine-tuned deployments and the Azure ML workspace's
    serverless endpoints, each plane whose variables are set (neither set: fail naming both)."""
    import os

    from ftassets.azure.deployments import teardown
    from ftassets.azure.settings import management_variables
    from ftassets.endpoints import MissingCredentials

    azure = project.azure
    planes = {
        "Azure OpenAI deployments": management_variables(azure),
        "Azure ML serverless endpoints": [
            azure.subscription_id_env,
            azure.resource_group_env,
            azure.azure_ml.workspace_env,
        ],
    }
    configured = [plane for plane, names_ in planes.items() if all(os.environ.get(n) for n in names_)]
    if not configured:
        raise MissingCredentials(
            "deleting what ftassets deployed needs "
            + " or ".join(
                f"{', '.join('$' + n for n in variables)} (for {plane})" for plane, variables in planes.items()
            )
            + "; export one of these sets (the names are configured in configs/azure.yaml) and run again"
        )
    deleted: list[dict[str, Any]] = []
    if "Azure OpenAI deployments" in configured:
        account = account_ref(azure)
        with management_client(azure, account) as mgmt:
            deleted += teardown(mgmt, account, names, log, hosting_price(project))
    if "Azure ML serverless endpoints" in configured:
        deleted += teardown_serverless(project, names, log)
    return deleted
