"""Which artifact answers for "entry X on task Y, variant V": resolved through the lineage Dagster recorded.

A variant is the evaluation's name for it: ``finetuned`` (the merged model, or the adapter on its base where the
method cannot merge), ``base``, or ``gguf-<quant>`` (a file of the cell's GGUF export). The artifact served is the
one of the latest materialization of that asset partition, checked to be current (Dagster's staleness and the
files against their manifest, as ``ftassets run`` checks them) and named with its data version, never "the newest
file in a folder". A variant that cannot be served says why and what to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftassets.artifacts import read_manifest
from ftassets.config import ProjectConfig
from ftassets.config.schemas import API_SOURCES
from ftassets.defs.partitions import cell_key
from ftassets.plan import not_exportable_reason
from ftassets.training.recipes import is_cloud


class NotServable(ValueError):
    """The variant cannot be served (yet): the message says why and what to do."""


@dataclass(frozen=True)
class ServedArtifact:
    model: str
    task: str
    variant: str
    asset: str
    """The asset whose artifact answers: merged_model, adapter, base_model or gguf_export."""
    path: Path
    """The artifact's folder, or the GGUF file."""
    data_version: str
    stale: str | None = None
    """Why it is not current, where it was served anyway (``allow_stale``)."""

    @property
    def served_name(self) -> str:
        """The model name clients send: ``<entry>/<task>/<variant>``."""
        return f"{self.model}/{self.task}/{self.variant}"

    @property
    def kind(self) -> str:
        return "gguf" if self.asset == "gguf_export" else "transformers"


def build_command(task: str, model: str) -> str:
    return f"ftassets run --tasks {task} --models {model}"


def resolve_variant(runner, task: str, model: str, variant: str, allow_stale: bool = False) -> ServedArtifact:
    """The artifact that answers for ``variant`` of ``model`` on ``task``, from ``runner``'s instance and store
    (a ``PipelineRunner``: its ``needs`` is the staleness ``ftassets run`` acts on)."""
    project: ProjectConfig = runner.project
    _check_names(project, task, model)
    base = project.bases[project.base_of(model)]
    if base.source in API_SOURCES:
        raise NotServable(
            f"model {model!r} is served by an API ({base.source}); call its endpoint directly, there are no weights "
            "here to serve"
        )
    asset, partition, path = _artifact_of(runner, task, model, variant)
    version = runner.recorded_version(asset, partition)
    if version is None:
        raise NotServable(
            f"{asset} [{partition}] has never been materialized; build it with `{build_command(task, model)}`"
        )
    why = runner.needs(asset, partition)
    if why is not None and not (allow_stale and path.exists()):
        raise NotServable(
            f"{asset} [{partition}] is not current ({why}); build it with `{build_command(task, model)}`"
            + ("" if allow_stale else ", or pass --allow-stale to serve the last materialized version")
        )
    return ServedArtifact(model, task, variant, asset, path, version, stale=why)


def _check_names(project: ProjectConfig, task: str, model: str) -> None:
    if model not in project.models:
        raise NotServable(f"unknown model entry {model!r}; models.yaml defines: {', '.join(project.models)}")
    if task not in project.tasks:
        raise NotServable(f"unknown task {task!r}; tasks.yaml defines: {', '.join(project.tasks)}")


def _artifact_of(runner, task: str, model: str, variant: str) -> tuple[str, object, Path]:
    project, store = runner.project, runner.store
    recipe = project.recipe_of(model)
    if variant == "base":
        return "base_model", model, store.path("base_model", project.base_of(model))
    cell = cell_key(task, model)
    if variant == "finetuned":
        if recipe is None:
            raise NotServable(f"model {model!r} has no recipe, so nothing was fine-tuned: serve --variant base")
        if is_cloud(recipe):
            raise NotServable(
                f"model {model!r} is fine-tuned in the cloud ({recipe.method}); its deployment is the endpoint to call"
            )
        asset = "merged_model" if recipe.mergeable else "adapter"
        return asset, cell, store.path(asset, model, task)
    if variant.startswith("gguf-"):
        reason = not_exportable_reason(project, model)
        if reason is not None:
            raise NotServable(f"{variant} of {model!r}: no GGUF export ({reason})")
        directory = store.path("gguf_export", model, task)
        quantizations = ((read_manifest(directory) or {}).get("summary") or {}).get("quantizations") or {}
        quant = variant.removeprefix("gguf-")
        if quantizations and quant not in quantizations:
            raise NotServable(
                f"gguf_export [{cell}] has no {quant} file; its variants: "
                + ", ".join(f"gguf-{name}" for name in quantizations)
            )
        file = quantizations.get(quant, {}).get("file")
        return "gguf_export", cell, directory / file if file else directory / f"{quant}.gguf"
    raise NotServable(f"unknown variant {variant!r}; one of: finetuned, base, gguf-<quant> (e.g. gguf-q8_0)")


def load_engine(runner, served: ServedArtifact, device: str = "auto", threads: int | None = None):
    """The engine that answers with ``served``'s weights."""
    from ftassets.serving.engines import LlamaCppEngine, TransformersEngine

    store, project = runner.store, runner.project
    if served.kind == "gguf":
        from ftassets.export.llama_runtime import default_threads

        summary = read_manifest(served.path.parent)["summary"]
        return LlamaCppEngine(
            served.path,
            served.served_name,
            context_length=int(summary["context_length"]),
            threads=threads or default_threads(),
        )
    from ftassets.devices import inference_dtype, resolve_device
    from ftassets.training.strategies import load_adapter_on_base, load_causal_lm, load_tokenizer

    device = resolve_device(device)
    if served.asset == "adapter":
        from ftassets.training.recipes import parse_recipe

        base_dir = store.path("base_model", project.base_of(served.model))
        recipe = parse_recipe(read_manifest(served.path)["recipe"])
        model, tokenizer = load_adapter_on_base(recipe, served.path, base_dir, device)
        return TransformersEngine(model, tokenizer, served.served_name)
    model = load_causal_lm(served.path, device, inference_dtype(device))
    return TransformersEngine(model, load_tokenizer(served.path), served.served_name)
