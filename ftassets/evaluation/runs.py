"""Evaluate one (task, model) cell: the base variant (shared by every entry on that base) and the fine-tune."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ftassets import lineage
from ftassets.artifacts import ArtifactStore, read_manifest, write_manifest
from ftassets.config import ProjectConfig
from ftassets.data.datasets import read_splits
from ftassets.evaluation.evaluate import VariantEvaluation, evaluate_variant
from ftassets.training.recipes import parse_recipe


@dataclass(frozen=True)
class CellEvaluation:
    table: pd.DataFrame
    predictions_path: Path
    fingerprint: str


def evaluate_cell(
    project: ProjectConfig, store: ArtifactStore, task_name: str, model: str, device: str, log: Callable[[str], None]
) -> CellEvaluation:
    task = project.tasks[task_name]
    base_name = project.base_of(model)
    base_dir = store.path("base_model", base_name)
    dataset_version = store.fingerprint("dataset", task_name)
    base_version = store.fingerprint("base_model", base_name)
    adapter_dir = store.path("adapter", model, task_name)
    recipe = project.recipe_of(model)
    adapter_version = store.fingerprint("adapter", model, task_name) if recipe is not None else None
    params = lineage.evaluation_params(project, task_name)
    version = lineage.fingerprint("evaluation", params, lineage.evaluation_upstream(dataset_version, base_version, adapter_version))

    test_rows = read_splits(store.path("dataset", task_name))["test"][: project.experiments.evaluation.max_test_examples]
    batch_size = project.experiments.evaluation.batch_size
    base_key = lineage.fingerprint("evaluation", params, lineage.evaluation_upstream(dataset_version, base_version, None))
    variants = [_base_variant(store, base_key, base_dir, task, test_rows, model, device, batch_size, log)]
    if adapter_version is not None:
        variants.append(_finetuned_variant(store, adapter_dir, base_dir, model, task_name, task, test_rows, device, batch_size, log))

    table = pd.DataFrame([v.row for v in variants]).assign(fingerprint=version)
    directory = store.path("evaluation", model, task_name)
    with store.writing(directory) as staging:
        pd.concat([v.predictions for v in variants], ignore_index=True).to_parquet(staging / "predictions.parquet", index=False)
        write_manifest(staging, asset="evaluation", partition=[task_name, model], fingerprint=version, rows=table.to_dict("records"))
    return CellEvaluation(table, directory / "predictions.parquet", version)


def _base_variant(store, key, base_dir, task, test_rows, model, device, batch_size, log) -> VariantEvaluation:
    """Entries sharing a base share its scores on a test split: computed once, then read back."""
    from ftassets.backends.local_hf import LocalHFBackend

    cache = store.root / "cache" / "base_evaluation" / key
    with store.lock(f"base-evaluation-{key}"):
        if not (cache / "predictions.parquet").exists():
            log(f"evaluating base {base_dir.name!r} on {task.name!r} ({len(test_rows)} examples)")
            with LocalHFBackend(model_dir=base_dir, device=device, batch_size=batch_size, name=base_dir.name) as backend:
                result = evaluate_variant(backend, task, test_rows, model, "base")
            with store.writing(cache) as staging:
                result.predictions.to_parquet(staging / "predictions.parquet", index=False)
                pd.DataFrame([result.row]).to_parquet(staging / "row.parquet", index=False)
        else:
            log(f"base {base_dir.name!r} on {task.name!r} was already evaluated; reusing {cache}")
    row = pd.read_parquet(cache / "row.parquet").iloc[0].to_dict() | {"model": model}
    return VariantEvaluation(row, pd.read_parquet(cache / "predictions.parquet").assign(model=model))


def _finetuned_variant(store, adapter_dir, base_dir, model, task_name, task, test_rows, device, batch_size, log) -> VariantEvaluation:
    from transformers import AutoTokenizer

    from ftassets.backends.local_hf import LocalHFBackend
    from ftassets.training.strategies import strategy_for

    recipe = parse_recipe(read_manifest(adapter_dir)["recipe"])
    if recipe.mergeable:
        merged_dir = store.path("merged_model", model, task_name)
        merged = read_manifest(merged_dir)
        if merged is None or merged["upstream"]["adapter"] != read_manifest(adapter_dir)["fingerprint"]:
            raise FileNotFoundError(f"merged_model for {model}/{task_name} is missing or older than its adapter; materialize merged_model first")
        backend = LocalHFBackend(model_dir=merged_dir, device=device, batch_size=batch_size, name=model)
    else:
        weights = strategy_for(recipe).load_finetuned(adapter_dir, base_dir, device)
        backend = LocalHFBackend(weights, AutoTokenizer.from_pretrained(base_dir), device=device, batch_size=batch_size, name=model)
    log(f"evaluating fine-tuned {model!r} on {task_name!r} ({len(test_rows)} examples)")
    with backend:
        return evaluate_variant(backend, task, test_rows, model, "finetuned")

