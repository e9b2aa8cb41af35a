"""The cell plan: for every partition, which asset applies, with which parameters, and why not.

One plain-Python rule, read by every asset, by the configuration sources Dagster observes, by the
runner, by the sensors and by the GGUF variants. ``step(project, asset, task=..., model=...)`` answers
for one asset of one partition; ``cell_plan`` for the whole (task, model) lineage.

An artifact's fingerprint hashes its asset's code version, the configuration its result depends on and
its upstream artifacts' fingerprints. Assets record it as their Dagster data version and in their
manifest. A step's ``fingerprint`` is the same value predicted from configuration alone: it is the data
version of the asset's configuration source (``ftassets/defs/assets/configuration.py``), so a YAML
edit changes exactly the configuration sources, and Dagster marks stale exactly the partitions whose
result it changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftassets.config import ProjectConfig
from ftassets.config.schemas import API_SOURCES
from ftassets.training.recipes import is_cloud, is_mergeable

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
CELL_ASSETS = ("tokenized_splits", "adapter", "merged_model", "gguf_export", "evaluation")
"""The assets of one (task, model) cell, in lineage order."""


@dataclass(frozen=True)
class Step:
    """One asset of one partition: whether it applies, the parameters its result depends on, and the
    fingerprint it will carry when built from the current configuration."""

    asset: str
    applies: bool
    params: Any = None
    upstream: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    @property
    def fingerprint(self) -> str:
        if not self.applies:
            return not_applicable(self.asset)
        return fingerprint(self.asset, self.params, self.upstream)


def fingerprint(asset: str, params: Any, upstream: dict[str, str | None] | None = None) -> str:
    payload = {"asset": asset, "code": CODE_VERSIONS[asset], "params": params, "upstream": upstream or {}}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def not_applicable(asset: str) -> str:
    """The data version of an asset that has nothing to build for a cell (no recipe, unmergeable)."""
    return fingerprint(asset, {"not_applicable": True})


def dataset_params(project: ProjectConfig, task: str) -> dict[str, Any]:
    """The task's configuration less the fields that change no row (a description, generation limits), the
    identity of its data files when it has a source (sizes and sha256: an edited file is a new dataset), and the
    accepted incoming files when there are any."""
    from ftassets.data.incoming import accepted_version

    config = project.tasks[task].config
    params = config.model_dump(mode="json", exclude=set(config.not_in_rows), exclude_none=True)
    if config.source is not None:
        from ftassets.data.sources import source_version

        params["source_version"] = source_version(config.source, project.config_dir)
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
        "preference_pairs": recipe is not None and recipe.needs_reference_model,
        **({"over_length": resolved.config.over_length} if resolved.config.over_length else {}),
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


def export_params() -> dict[str, Any]:
    from ftassets.export.export import ExportSettings

    return ExportSettings().params()


def cloud_adapter_upstream(dataset: str, base: str) -> dict[str, str]:
    """A cloud fine-tune trains from the dataset itself (no local tokenization) on the base's model."""
    return {"dataset": dataset, "base_model": base}


def evaluation_upstream(
    dataset: str, base: str, adapter: str | None, gguf_export: str | None = None
) -> dict[str, str | None]:
    """What an evaluation depends on; the GGUF export only where the cell has one (its rows are evaluated too)."""
    upstream = {"dataset": dataset, "base_model": base, "adapter": adapter}
    return upstream | {"gguf_export": gguf_export} if gguf_export else upstream


def not_exportable_reason(project: ProjectConfig, model: str) -> str | None:
    """Why a model entry's fine-tune has no GGUF export, or None when it has one."""
    base = project.bases[project.base_of(model)]
    recipe = project.recipe_of(model)
    if base.source in API_SOURCES:
        return f"model {model!r} is served by an API ({base.source}): there are no weights to export"
    if recipe is None:
        return f"model {model!r} has no recipe: only fine-tunes are exported"
    if is_cloud(recipe):
        return f"model {model!r} is fine-tuned in the cloud: there are no local weights to export"
    if not recipe.mergeable:
        return (
            f"method {recipe.method!r} keeps its trained virtual tokens outside the weights, which a GGUF cannot hold"
        )
    if base.source == "huggingface" and Path(base.id).is_dir():
        refusal = _export_refusal(str(Path(base.id).resolve()), _config_stamp(Path(base.id)))
        if refusal:
            return f"base {project.base_of(model)!r} cannot be exported to GGUF: {refusal}"
    return None


def _config_stamp(folder: Path) -> tuple:
    """What the export decision reads from a local base folder, by size and time: a replaced file decides anew."""
    stamps = []
    for name in ("config.json", "tokenizer.json"):
        try:
            stat = (folder / name).stat()
            stamps.append((name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append((name, None, None))
    return tuple(stamps)


@functools.lru_cache(maxsize=64)
def _export_refusal(folder: str, stamp: tuple) -> str | None:
    from ftassets.export.gguf_writer import export_refusal

    return export_refusal(Path(folder))


def dataset_step(project: ProjectConfig, task: str) -> Step:
    return Step("dataset", True, dataset_params(project, task))


def base_step(project: ProjectConfig, model: str) -> Step:
    return Step("base_model", True, base_params(project, project.base_of(model)))


def cell_plan(project: ProjectConfig, task: str, model: str) -> dict[str, Step]:
    """Every asset of the (task, model) lineage, from ``dataset`` to ``evaluation``, in lineage order."""
    dataset, base = dataset_step(project, task), base_step(project, model)
    recipe = project.recipe_of(model)
    plan = {"dataset": dataset, "base_model": base}
    inputs = {"dataset": dataset.fingerprint, "base_model": base.fingerprint}
    if recipe is None:
        reason = f"model {model!r} has no recipe: it is evaluated as a base model only"
        for asset in ("tokenized_splits", "adapter", "merged_model"):
            plan[asset] = Step(asset, False, reason=reason)
    elif is_cloud(recipe):
        plan["tokenized_splits"] = Step(
            "tokenized_splits", False, reason=f"{recipe.method} trains in the cloud from the dataset's JSONL"
        )
        plan["adapter"] = Step(
            "adapter", True, recipe_params(recipe), cloud_adapter_upstream(dataset.fingerprint, base.fingerprint)
        )
        plan["merged_model"] = Step(
            "merged_model", False, reason="a cloud fine-tune is served by its deployment: no weights to merge"
        )
    else:
        plan["tokenized_splits"] = Step("tokenized_splits", True, tokenized_params(project, task, model), inputs)
        plan["adapter"] = Step(
            "adapter", True, recipe_params(recipe), {"tokenized_splits": plan["tokenized_splits"].fingerprint}
        )
        plan["merged_model"] = (
            Step("merged_model", True, {}, {"adapter": plan["adapter"].fingerprint})
            if is_mergeable(recipe)
            else Step(
                "merged_model",
                False,
                reason=f"method {recipe.method!r} cannot be merged into weights; evaluation applies the adapter",
            )
        )
    reason = not_exportable_reason(project, model)
    plan["gguf_export"] = (
        Step("gguf_export", True, export_params(), {"merged_model": plan["merged_model"].fingerprint})
        if reason is None
        else Step("gguf_export", False, reason=reason)
    )
    adapter = plan["adapter"].fingerprint if plan["adapter"].applies else None
    gguf = plan["gguf_export"].fingerprint if plan["gguf_export"].applies else None
    upstream = evaluation_upstream(dataset.fingerprint, base.fingerprint, adapter, gguf)
    plan["evaluation"] = Step("evaluation", True, evaluation_params(project, task), upstream)
    return plan


def comparison_step(project: ProjectConfig, task: str) -> Step:
    """A task's comparison lists every model entry, in the configuration's order: adding or removing an entry
    changes it (once), although no evaluation it reads changed."""
    return Step("comparison", True, {"models": list(project.models)})


def forgetting_step(project: ProjectConfig, model: str) -> Step:
    """The cross-task matrix exists for fine-tuned entries only; its configuration is every task's evaluation
    settings (the fine-tunes and datasets it reads are its upstream assets). A group of seed repeats has one, its
    first entry's: the repeats are there for the comparison's statistics."""
    if project.recipe_of(model) is None:
        return Step("forgetting", False, reason=f"model {model!r} has no recipe: nothing was fine-tuned to forget")
    if project.repeat_index(model):
        entry = project.repeat_of(model)
        reason = f"model {model!r} is a seed repeat of {entry!r}: the group's forgetting matrix is {entry!r}'s"
        return Step("forgetting", False, reason=reason)
    return Step("forgetting", True, evaluation_params_all(project))
