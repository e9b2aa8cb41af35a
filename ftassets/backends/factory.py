"""The one place that builds the backend answering for an evaluated variant: ``backend_for_base`` from a base's
``source`` (local weights, an Azure OpenAI deployment, any OpenAI-compatible endpoint), ``backend_for_finetune``
for a fine-tune (its merged weights, its adapter on the base, or the deployment a cloud fine-tune went to),
``backend_for_gguf`` for a GGUF export (its own llama.cpp server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftassets.artifacts import ArtifactStore, read_manifest
from ftassets.azure.clients import openai_client
from ftassets.azure.settings import resolve_base
from ftassets.backends.azure_openai import AzureOpenAIBackend
from ftassets.backends.base import ModelBackend
from ftassets.backends.openai_compatible import OpenAICompatibleBackend
from ftassets.config import ProjectConfig
from ftassets.endpoints import ApiTarget
from ftassets.training.recipes import is_cloud, parse_recipe


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
        url_from=target.url_from,
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
    """The deployment a cloud fine-tune was deployed to, at the fine-tuned price
    (``fine_tuning.pricing.<model>.inference``
    in azure.yaml), else its base model's."""
    from dataclasses import replace

    from ftassets.azure.settings import model_family

    if adapter_manifest["deployment"].get("kind") == "serverless":
        from ftassets.azure.foundry import serverless_target

        return api_backend(serverless_target(project, base, adapter_manifest), name=name)
    target = resolve_base(project, base, deployment=adapter_manifest["deployment"]["name"])
    tuned = project.azure.fine_tuning.pricing.get(model_family(target.model))
    return api_backend(replace(target, pricing=tuned.inference) if tuned and tuned.inference else target, name=name)


def backend_for_finetune(
    project: ProjectConfig,
    store: ArtifactStore,
    adapter_dir: Path,
    base_dir: Path,
    model: str,
    task_name: str,
    device: str,
    settings,
) -> ModelBackend:
    """The fine-tune of ``model`` on ``task_name``: its merged weights, its adapter on the base (not mergeable),
    or the deployment a cloud fine-tune was deployed to."""
    from ftassets.backends.local_hf import LocalHFBackend
    from ftassets.training.strategies import load_adapter_on_base

    recipe = parse_recipe(read_manifest(adapter_dir)["recipe"])
    if is_cloud(recipe):
        return backend_for_cloud_finetune(project, project.base_of(model), read_manifest(adapter_dir), model)
    if recipe.mergeable:
        merged_dir = store.path("merged_model", model, task_name)
        merged = read_manifest(merged_dir)
        if merged is None or merged["upstream"]["adapter"] != read_manifest(adapter_dir)["fingerprint"]:
            raise FileNotFoundError(
                f"merged_model for {model}/{task_name} is missing or older than its adapter; "
                "materialize merged_model first"
            )
        return LocalHFBackend(
            model_dir=merged_dir,
            device=device,
            batch_size=settings.batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            name=model,
        )
    weights, tokenizer = load_adapter_on_base(recipe, adapter_dir, base_dir, device)
    return LocalHFBackend(
        weights,
        tokenizer,
        device=device,
        batch_size=settings.batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        name=model,
    )


def backend_for_gguf(
    path: Path, alias: str, context_length: int, name: str, threads: int | None = None
) -> ModelBackend:
    """A GGUF file served by its own ``llama_cpp.server`` (started here, stopped when the backend closes), asked
    through the OpenAI-compatible API like any other server."""
    from ftassets.backends.llama_cpp_server import LlamaCppServer, LlamaCppServerBackend
    from ftassets.export.llama_runtime import default_threads

    server = LlamaCppServer(path, alias=alias, threads=threads or default_threads(), n_ctx=context_length)
    return LlamaCppServerBackend(server.start(), name=name)
