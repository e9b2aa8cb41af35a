"""Resolve an API base from configuration and the environment: endpoint, credentials, model family, price.

Missing variables are reported all at once, by name, before any request is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftassets.config import ConfigError, ProjectConfig
from ftassets.config.api_entries import model_family
from ftassets.config.schemas import API_SOURCES, AzureFile, TokenPricing

REASONING_MODEL_PREFIXES = ("gpt-5", "o1", "o3", "o4")
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"


class MissingCredentials(ConfigError):
    """An API partition was asked for while the environment variables it needs are unset."""


@dataclass(frozen=True)
class ApiTarget:
    """Everything needed to call one API model; ``secret`` is the key (or None for Entra ID / no key)."""

    base: str
    source: str
    url: str
    model: str
    deployment: str
    api: str
    api_version: str | None
    auth: str
    reasoning_model: bool
    reasoning_effort: str | None
    verbosity: str | None
    concurrency: int
    timeout_s: float
    max_retries: int
    pricing: TokenPricing | None
    ad_token_env: str | None = None
    secret: str | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """What a manifest or metadata may show: where and what, never the key."""
        return {
            "source": self.source,
            "endpoint": self.url,
            "deployment": self.deployment,
            "model": self.model,
            "api": self.api,
            "api_version": self.api_version,
            "auth": self.auth,
            "reasoning_model": self.reasoning_model,
            "reasoning_effort": self.reasoning_effort,
            "verbosity": self.verbosity,
            "pricing": self.pricing.model_dump(mode="json") if self.pricing else None,
        }


def is_api_base(project: ProjectConfig, base: str) -> bool:
    return project.bases[base].source in API_SOURCES


def is_reasoning_model(model: str) -> bool:
    return model.lower().startswith(REASONING_MODEL_PREFIXES)


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


def require_variables(names: list[str], what: str) -> dict[str, str]:
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise MissingCredentials(
            f"{what} needs {', '.join('$' + name for name in missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not set; export {'it' if len(missing) == 1 else 'them'} "
            "(the names are configured in configs/azure.yaml or configs/models.yaml) and run again"
        )
    return {name: os.environ[name] for name in names}


def resolve_base(project: ProjectConfig, base: str, deployment: str | None = None) -> ApiTarget:
    """The API target of an API base; ``deployment`` overrides the deployment name (a fine-tune's own)."""
    config = project.bases[base]
    values = require_variables(required_variables(project, base), f"base {base!r} (models.yaml bases.{base})")
    if config.source == "openai_compatible":
        return ApiTarget(
            base=base,
            source=config.source,
            url=values[config.base_url_env],
            model=config.model,
            deployment=deployment or config.model,
            api="v1",
            api_version=None,
            auth="api_key" if config.api_key_env else "none",
            reasoning_model=config.reasoning_model or is_reasoning_model(config.model),
            reasoning_effort=config.reasoning_effort,
            verbosity=config.verbosity,
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            pricing=config.pricing,
            secret=values.get(config.api_key_env) if config.api_key_env else None,
        )
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
        secret=values.get(endpoint.api_key_env) if endpoint.auth == "api_key" else None,
    )
