"""Cross-file rules of API bases and cloud recipes: models.yaml against azure.yaml and experiments.yaml.

Which models Azure OpenAI fine-tunes is configuration knowledge too, so it lives here and the Azure code
asks it from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftassets.config.errors import ConfigError
from ftassets.config.schemas import API_SOURCES, AzureFile, ModelsFile
from ftassets.training.recipes import CLOUD_METHODS

FINE_TUNABLE_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
"""Models Azure OpenAI fine-tunes with supervised fine-tuning (SFT), as of 2026-09."""
SUGGESTED_FINE_TUNABLE = ("gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o-mini")


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


def check_api_entries(config_dir: Path, models: ModelsFile, recipes: dict[str, Any], azure: AzureFile) -> None:
    """Cross-file rules of API bases and cloud recipes, called by the config loader."""

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
        if api and not recipe.cloud:
            raise ConfigError(
                f"{field_name}: recipe {entry.recipe!r} trains locally ({recipe.method}) but base {entry.base!r} is "
                f"an API model without weights; use a cloud recipe ({', '.join(CLOUD_METHODS)}) or a local base"
            )
        if not api and recipe.cloud:
            raise ConfigError(
                f"{field_name}: recipe {entry.recipe!r} ({recipe.method}) fine-tunes in the cloud but base "
                f"{entry.base!r} is local ({base.source}); base the entry on an API base"
            )
        if base.source not in recipe.base_sources:
            note = f" ({recipe.base_source_note})" if recipe.base_source_note else ""
            raise ConfigError(
                f"{field_name}: {recipe.method} needs an {' or '.join(recipe.base_sources)} base{note}, "
                f"not {base.source!r}"
            )
        if recipe.cloud and base.source == "azure_openai":
            check_fine_tunable(azure.deployments[base.deployment].model, where("models.yaml", f"models.{name}.base"))
