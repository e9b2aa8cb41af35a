"""Which backend answers for a model: ``backend_for_base`` picks it from a base's ``source`` (local weights, an
Azure OpenAI deployment, any OpenAI-compatible endpoint), ``backend_for_cloud_finetune`` from where a cloud
fine-tune was deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftassets.azure.clients import openai_client
from ftassets.azure.settings import ApiTarget, resolve_base
from ftassets.backends.azure_openai import AzureOpenAIBackend
from ftassets.backends.base import ModelBackend
from ftassets.backends.openai_compatible import OpenAICompatibleBackend
from ftassets.config import ProjectConfig


def api_backend(target: ApiTarget, name: str) -> OpenAICompatibleBackend:
    if target.source == "azure_openai":
        return AzureOpenAIBackend(target, name=name)
    return OpenAICompatibleBackend(
        openai_client(target),
        target.model,
        name=name,
        reasoning_model=target.reasoning_model,
        reasoning_effort=target.reasoning_effort,
        verbosity=target.verbosity,
        concurrency=target.concurrency,
        pricing=target.pricing,
    )


def backend_for_base(project: ProjectConfig, base: str, base_dir: Path, device: str, settings) -> ModelBackend:
    """The backend that answers for a base: the API it names, or its local weights under ``base_dir``, batched as
    the evaluation ``settings`` say."""
    if project.bases[base].source in ("azure_openai", "openai_compatible"):
        return api_backend(resolve_base(project, base), name=base)
    from ftassets.backends.local_hf import LocalHFBackend

    return LocalHFBackend(
        model_dir=base_dir,
        device=device,
        batch_size=settings.batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        name=base_dir.name,
    )


def backend_for_cloud_finetune(
    project: ProjectConfig, base: str, adapter_manifest: dict[str, Any], name: str
) -> ModelBackend:
    """The deployment a cloud fine-tune was deployed to, at the fine-tuned price (``fine_tuning.pricing.<model>.inference``
    in azure.yaml), else its base model's."""
    from dataclasses import replace

    from ftassets.azure.settings import model_family

    if adapter_manifest["deployment"].get("kind") == "serverless":
        from ftassets.azure.foundry import serverless_target

        return api_backend(serverless_target(project, base, adapter_manifest), name=name)
    target = resolve_base(project, base, deployment=adapter_manifest["deployment"]["name"])
    tuned = project.azure.fine_tuning.pricing.get(model_family(target.model))
    return api_backend(replace(target, pricing=tuned.inference) if tuned and tuned.inference else target, name=name)
