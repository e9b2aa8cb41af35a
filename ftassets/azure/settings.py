"""Resolve an API base from configuration and the environment: endpoint, credentials, model family, price.

Missing variables are reported all at once, by name, before any request is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftassets.config import ConfigError, ProjectConfig
from ftassets.config.schemas import API_SOURCES, AzureFile, ModelsFile, TokenPricing

FINE_TUNABLE_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
"""Models Azure OpenAI fine-tunes with supervised fine-tuning (SFT), as of 2026-09."""
SUGGESTED_FINE_TUNABLE = ("gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o-mini")
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


def model_family(model: str) -> str:
    """``gpt-4.1-mini-2025-04-14.ft-abc`` -> ``gpt-4.1-mini``: the name its price and fine-tunability go by."""
    name = model.lower().split(".ft-")[0].split(":ft-")[0]
    candidates = sorted(
        {*FINE_TUNABLE_MODELS, "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-chat"}, key=len, reverse=True
    )
    return next((c for c in candidates if name == c or name.startswith(c + "-")), name)


def check_fine_tunable(model: str, where: str) -> None:
    family = model_family(model)
    if family not in FINE_TUNABLE_MODELS:
        why = (
            "the GPT-5 family has no supervised fine-tuning on Azure OpenAI"
            if family.startswith("gpt-5")
            else (f"{model!r} is not a model Azure OpenAI fine-tunes")
        )
        raise ConfigError(
            f"{where}: {why}; base the entry on a deployment of a fine-tunable model such as "
            f"{', '.join(SUGGESTED_FINE_TUNABLE)} (all SFT models: {', '.join(FINE_TUNABLE_MODELS)})"
        )


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


def check_api_entries(config_dir: Path, models: ModelsFile, recipes: dict[str, Any], azure: AzureFile) -> None:
    """Cross-file rules of API bases and cloud recipes, called by the config loader."""
    from ftassets.training.recipes import CLOUD_METHODS

    def where(file: str, field_name: str) -> str:
        return f"{config_dir / file}: {field_name}"

    for name, base in models.bases.items():
        if base.source == "azure_openai":
            if base.deployment not in azure.deployments:
                raise ConfigError(
                    f"{where('models.yaml', f'bases.{name}.deployment')}: unknown deployment {base.deployment!r}; "
                    f"defined in azure.yaml deployments: {', '.join(sorted(azure.deployments)) or 'none'}"
                )
    for name, deployment in azure.deployments.items():
        if model_family(deployment.model) not in azure.pricing:
            raise ConfigError(
                f"{where('azure.yaml', f'deployments.{name}.model')}: no price for {deployment.model!r}; add "
                f"pricing.{model_family(deployment.model)} (input_per_1m, cached_input_per_1m, output_per_1m, as_of)"
            )
    for name, entry in models.models.items():
        recipe = recipes.get(entry.recipe) if entry.recipe else None
        base = models.bases[entry.base]
        api = base.source in API_SOURCES
        field_name = where("models.yaml", f"models.{name}.recipe")
        if recipe is None:
            continue
        if api and recipe.method not in CLOUD_METHODS:
            raise ConfigError(
                f"{field_name}: recipe {entry.recipe!r} trains locally ({recipe.method}) but base {entry.base!r} is "
                f"an API model without weights; use a cloud recipe ({', '.join(CLOUD_METHODS)}) or a local base"
            )
        if not api and recipe.method in CLOUD_METHODS:
            raise ConfigError(
                f"{field_name}: recipe {entry.recipe!r} ({recipe.method}) fine-tunes in the cloud but base "
                f"{entry.base!r} is local ({base.source}); base the entry on an API base"
            )
        if recipe.method == "foundry_sft" and base.source != "openai_compatible":
            raise ConfigError(
                f"{field_name}: foundry_sft needs an openai_compatible base (the catalog model's own serverless "
                f"endpoint, evaluated as the base row), not {base.source!r}"
            )
        if recipe.method == "azure_sft":
            if base.source != "azure_openai":
                raise ConfigError(f"{field_name}: azure_sft needs an azure_openai base, not {base.source!r}")
            check_fine_tunable(azure.deployments[base.deployment].model, where("models.yaml", f"models.{name}.base"))
