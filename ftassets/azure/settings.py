"""Resolve an Azure OpenAI base from configuration and the environment: endpoint, credentials, model family, price
(an OpenAI-compatible base resolves in ``ftassets/endpoints.py``).

Missing variables are reported all at once, by name, before any request is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ftassets.config import ProjectConfig
from ftassets.config.api_entries import model_family
from ftassets.config.schemas import API_SOURCES, AzureFile
from ftassets.endpoints import ApiTarget, is_reasoning_model, openai_compatible_target, require_variables

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"


def is_api_base(project: ProjectConfig, base: str) -> bool:
    return project.bases[base].source in API_SOURCES


def required_variables(project: ProjectConfig, base: str) -> list[str]:
    """Names of the environment variables an API base needs (empty for local bases)."""
    config = project.bases[base]
    if config.source == "openai_compatible":
        return [config.base_url_env] + ([config.api_key_env] if config.api_key_env else [])
    if config.source != "azure_openai":
        return []
    endpoint = project.azure.endpoints[project.azure.deployments[config.deployment].endpoint]
    return [endpoint.endpoint_env] + ([endpoint.api_key_env] if endpoint.auth == "api_key" else [])


def missing_variables(project: ProjectConfig, base: str) -> list[str]:
    return [name for name in required_variables(project, base) if not os.environ.get(name)]


def without_missing_credentials(project: ProjectConfig, models: list[str], log: Callable[[str], None]) -> list[str]:
    """The selection minus the API entries whose variables are unset, saying which and why (for default runs;
    an entry named explicitly is kept, and fails at once naming the variables)."""
    left_out = {model: missing for model in models if (missing := missing_variables(project, project.base_of(model)))}
    for variables in dict.fromkeys(tuple(v) for v in left_out.values()):
        names = [model for model, missing in left_out.items() if tuple(missing) == variables]
        log(
            f"leaving out {', '.join(names)}: {', '.join('$' + v for v in variables)} not set "
            "(export them to include these API models)"
        )
    return [model for model in models if model not in left_out]


def management_variables(azure: AzureFile) -> list[str]:
    return [azure.subscription_id_env, azure.resource_group_env, azure.account_name_env]


def resolve_base(project: ProjectConfig, base: str, deployment: str | None = None) -> ApiTarget:
    """The API target of an API base; ``deployment`` overrides the deployment name (a fine-tune's own)."""
    config = project.bases[base]
    values = require_variables(required_variables(project, base), f"base {base!r} (models.yaml bases.{base})")
    if config.source == "openai_compatible":
        return openai_compatible_target(base, config, values, deployment)
    spec = project.azure.deployments[config.deployment]
    endpoint = project.azure.endpoints[spec.endpoint]
    return ApiTarget(
        base=base,
        source=config.source,
        url=values[endpoint.endpoint_env].rstrip("/"),
        model=spec.model,
        deployment=deployment or spec.deployment,
        api=endpoint.api,
        api_version=endpoint.api_version if endpoint.api == "deployments" else None,
        auth=endpoint.auth,
        reasoning_model=is_reasoning_model(spec.model),
        reasoning_effort=spec.reasoning_effort,
        verbosity=spec.verbosity,
        concurrency=endpoint.concurrency,
        timeout_s=endpoint.timeout_s,
        max_retries=endpoint.max_retries,
        pricing=project.azure.pricing.get(model_family(spec.model)),
        ad_token_env=endpoint.ad_token_env,
        url_from=f"${endpoint.endpoint_env} (configs/azure.yaml endpoints.{spec.endpoint}.endpoint_env)",
        secret=values.get(endpoint.api_key_env) if endpoint.auth == "api_key" else None,
    )
