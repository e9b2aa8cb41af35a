"""Fingerprints: the staleness rule of the graph.

An artifact's fingerprint hashes its asset's code version, the configuration it was built from and
its upstream artifacts' fingerprints. Assets record it as their Dagster data version and in their
manifest. ``expected_fingerprints`` computes the same values from configuration alone, so the runner
can tell, without running anything, which partitions are missing or stale: a partition is current
when its latest materialization and its manifest both carry the expected fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ftassets.config import ProjectConfig

CODE_VERSIONS = {
    "dataset": "2",
    "base_model": "1",
    "tokenized_splits": "1",
    "adapter": "2",
    "merged_model": "1",
    "gguf_export": "1",
    "evaluation": "3",
    "comparison": "3",
    "leaderboard": "1",
    "forgetting": "1",
}


def fingerprint(asset: str, params: Any, upstream: dict[str, str] | None = None) -> str:
    payload = {"asset": asset, "code": CODE_VERSIONS[asset], "params": params, "upstream": upstream or {}}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dataset_params(project: ProjectConfig, task: str) -> dict[str, Any]:
    """The task's configuration, plus the accepted incoming files when there are any (so existing
    fingerprints stay as they were until data is dropped)."""
    from ftassets.data.incoming import accepted_version

    params = project.tasks[task].config.model_dump(mode="json")
    incoming = accepted_version(project, task)
    return {**params, "incoming": incoming} if incoming else params


def base_params(project: ProjectConfig, base: str) -> dict[str, Any]:
    params = {"name": base, **project.bases[base].model_dump(mode="json")}
    if params["source"] == "azure_openai":
        from ftassets.azure.settings import model_family

        deployment = project.azure.deployments[params["deployment"]]
        pricing = project.azure.pricing.get(model_family(deployment.model))
        params |= {
            "azure_deployment": deployment.model_dump(mode="json"),
            "pricing": pricing.model_dump(mode="json") if pricing else None,
        }
    return params


def tokenized_params(project: ProjectConfig, task: str, model: str) -> dict[str, Any]:
    recipe = project.recipe_of(model)
    resolved = project.tasks[task]
    return {
        "max_seq_length": recipe.max_seq_length if recipe else None,
        "prompt_template": resolved.prompt_template,
        "system_prompt": resolved.config.system_prompt,
        "preference_pairs": recipe is not None and recipe.method == "dpo",
    }


def recipe_params(recipe: Any) -> dict[str, Any] | None:
    return recipe.model_dump(mode="json") if recipe is not None else None


def evaluation_params(project: ProjectConfig, task: str) -> dict[str, Any]:
    resolved = project.tasks[task]
    return {
        "max_new_tokens": resolved.max_new_tokens,
        "primary_metric": resolved.primary_metric,
        "settings": project.experiments.evaluation.model_dump(mode="json"),
    }


def evaluation_params_all(project: ProjectConfig) -> dict[str, Any]:
    """Evaluation settings and every task's generation parameters (the forgetting matrix spans all tasks)."""
    return {
        "settings": project.experiments.evaluation.model_dump(mode="json"),
        "tasks": {task: [resolved.max_new_tokens, resolved.primary_metric] for task, resolved in project.tasks.items()},
    }


def not_applicable(asset: str) -> str:
    """The data version of an asset that has nothing to build for a cell (no recipe, unmergeable)."""
    return fingerprint(asset, {"not_applicable": True})


def cloud_adapter_upstream(dataset: str, base: str) -> dict[str, str]:
    """A cloud fine-tune trains from the dataset itself (no local tokenization) on the base's model."""
    return {"dataset": dataset, "base_model": base}


def evaluation_upstream(
    dataset: str, base: str, adapter: str | None, gguf_export: str | None = None
) -> dict[str, str | None]:
    """What an evaluation depends on; the GGUF export only where the cell has one (its rows are evaluated too)."""
    upstream = {"dataset": dataset, "base_model": base, "adapter": adapter}
    return upstream | {"gguf_export": gguf_export} if gguf_export else upstream


def export_params() -> dict[str, Any]:
    from ftassets.export.export import ExportSettings

    return ExportSettings().params()


def expected_fingerprints(project: ProjectConfig, task: str, model: str) -> dict[str, str]:
    """Fingerprints every asset of one (task, model) cell should carry when built from config."""
    from ftassets.training.recipes import is_cloud, is_mergeable

    dataset = fingerprint("dataset", dataset_params(project, task))
    base = fingerprint("base_model", base_params(project, project.base_of(model)))
    recipe = project.recipe_of(model)
    expected = {"dataset": dataset, "base_model": base}
    if recipe is not None and is_cloud(recipe):
        expected |= {name: not_applicable(name) for name in ("tokenized_splits", "merged_model")}
        adapter = expected["adapter"] = fingerprint(
            "adapter", recipe_params(recipe), cloud_adapter_upstream(dataset, base)
        )
    elif recipe is None:
        expected |= {name: not_applicable(name) for name in ("tokenized_splits", "adapter", "merged_model")}
        adapter = None
    else:
        expected["tokenized_splits"] = fingerprint(
            "tokenized_splits", tokenized_params(project, task, model), {"dataset": dataset, "base_model": base}
        )
        adapter = expected["adapter"] = fingerprint(
            "adapter", recipe_params(recipe), {"tokenized_splits": expected["tokenized_splits"]}
        )
        expected["merged_model"] = (
            fingerprint("merged_model", {}, {"adapter": adapter})
            if is_mergeable(recipe)
            else not_applicable("merged_model")
        )
    from ftassets.export.variants import not_exportable_reason

    exportable = not_exportable_reason(project, model) is None
    expected["gguf_export"] = (
        fingerprint("gguf_export", export_params(), {"merged_model": expected["merged_model"]})
        if exportable
        else not_applicable("gguf_export")
    )
    expected["evaluation"] = fingerprint(
        "evaluation",
        evaluation_params(project, task),
        evaluation_upstream(dataset, base, adapter, expected["gguf_export"] if exportable else None),
    )
    return expected
