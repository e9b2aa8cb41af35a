"""Evaluate one (task, model) cell: the base variant (shared by every entry on that base) and the fine-tune."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ftassets import plan
from ftassets.artifacts import ArtifactStore, read_manifest, write_manifest
from ftassets.backends.factory import backend_for_base, backend_for_finetune
from ftassets.config import ProjectConfig
from ftassets.data.datasets import read_splits
from ftassets.evaluation.evaluate import VariantEvaluation, evaluate_variant, significance
from ftassets.evaluation.gguf_variants import gguf_variants
from ftassets.evaluation.similarity import embedder_for

TABLE_FILE = "table.parquet"


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
    params = plan.evaluation_params(project, task_name)
    exported = plan.not_exportable_reason(project, model) is None
    gguf_version = store.fingerprint_if_built("gguf_export", model, task_name) if exported else None
    upstream = plan.evaluation_upstream(dataset_version, base_version, adapter_version, gguf_version)
    version = plan.fingerprint("evaluation", params, upstream)

    test_rows = read_splits(store.path("dataset", task_name))["test"][
        : project.experiments.evaluation.max_test_examples
    ]
    settings = project.experiments.evaluation
    base_key = plan.fingerprint("evaluation", params, plan.evaluation_upstream(dataset_version, base_version, None))
    variants = [_base_variant(project, store, base_key, base_dir, task, test_rows, model, device, settings, log)]
    if adapter_version is not None:
        # One embedder (the base loads on first use) for the fine-tuned row and its GGUF rows.
        embedder = embedder_for(project, project.base_of(model), base_dir, device)
        with embedder or nullcontext():
            variants.append(
                _finetuned_variant(
                    project,
                    store,
                    adapter_dir,
                    base_dir,
                    model,
                    task_name,
                    task,
                    test_rows,
                    device,
                    settings,
                    log,
                    embedder,
                )
            )
            variants += gguf_variants(
                project, store, model, task_name, task, test_rows, variants[-1], settings, log, embedder=embedder
            )

    predictions = pd.concat([v.predictions for v in variants], ignore_index=True)
    table = pd.DataFrame([v.row for v in variants])
    if len(variants) > 1:
        table = table.merge(
            significance(predictions, settings.confidence, settings.bootstrap_resamples),
            on=["model", "variant"],
            how="left",
        )
    table = table.assign(fingerprint=version)
    directory = store.path("evaluation", model, task_name)
    with store.writing(directory) as staging:
        predictions.to_parquet(staging / "predictions.parquet", index=False)
        table.to_parquet(staging / TABLE_FILE, index=False)
        write_manifest(
            staging,
            asset="evaluation",
            partition=[task_name, model],
            fingerprint=version,
            rows=table.to_dict("records"),
        )
    return CellEvaluation(table, directory / "predictions.parquet", version)


def _base_variant(
    project, store, key, base_dir, task, test_rows, model, device, settings, log, point_only: bool = False
) -> VariantEvaluation:
    """Entries sharing a base share its scores on a test split: computed once, then read back (``point_only``: without
    intervals and perplexity, for the forgetting matrix, whose ``key`` differs from the evaluation's)."""

    cache = store.root / "cache" / "base_evaluation" / key
    with store.lock(f"base-evaluation-{key}"):
        if not (cache / "predictions.parquet").exists():
            log(f"evaluating base {base_dir.name!r} on {task.name!r} ({len(test_rows)} examples)")
            embedder = embedder_for(project, project.base_of(model), base_dir, device)
            with (
                backend_for_base(project, base_dir.name, base_dir, device, settings) as backend,
                embedder or nullcontext(),
            ):
                result = evaluate_variant(
                    backend, task, test_rows, model, "base", settings, log, embedder=embedder, point_only=point_only
                )
            with store.writing(cache) as staging:
                result.predictions.to_parquet(staging / "predictions.parquet", index=False)
                pd.DataFrame([result.row]).to_parquet(staging / "row.parquet", index=False)
        else:
            log(f"base {base_dir.name!r} on {task.name!r} was already evaluated; reusing {cache}")
    row = pd.read_parquet(cache / "row.parquet").iloc[0].to_dict() | {"model": model}
    return VariantEvaluation(row, pd.read_parquet(cache / "predictions.parquet").assign(model=model))


def _finetuned_variant(
    project, store, adapter_dir, base_dir, model, task_name, task, test_rows, device, settings, log, embedder
) -> VariantEvaluation:
    log(f"evaluating {model!r} fine-tuned on {task_name!r}, on {task.name!r} ({len(test_rows)} examples)")
    with backend_for_finetune(project, store, adapter_dir, base_dir, model, task_name, device, settings) as backend:
        return evaluate_variant(backend, task, test_rows, model, "finetuned", settings, log, embedder=embedder)


def forgetting_upstream(project: ProjectConfig, store: ArtifactStore, model: str) -> dict[str, str | None]:
    """What a model entry's forgetting matrix depends on: its adapters, every task's dataset, its base."""
    upstream: dict[str, str | None] = {"base_model": store.fingerprint("base_model", project.base_of(model))}
    for task in project.tasks:
        upstream[f"dataset:{task}"] = store.fingerprint_if_built("dataset", task)
        if project.recipe_of(model) is not None:
            upstream[f"adapter:{task}"] = store.fingerprint_if_built("adapter", model, task)
    return upstream


def forgetting_version(project: ProjectConfig, store: ArtifactStore, model: str) -> str:
    return plan.fingerprint(
        "forgetting", plan.evaluation_params_all(project), forgetting_upstream(project, store, model)
    )


def evaluate_forgetting(
    project: ProjectConfig, store: ArtifactStore, model: str, device: str, log: Callable[[str], None]
) -> pd.DataFrame:
    """The cross-task matrix of one model entry: for every task it was fine-tuned on (an adapter exists), its
    primary metric on every task's test split next to its base's, on the first ``forgetting_examples``.

    The diagonal is the task it was trained on; off the diagonal, a negative delta is what fine-tuning on
    ``trained_on`` cost on ``evaluated_on``.
    """
    settings = project.experiments.evaluation
    base_dir = store.path("base_model", project.base_of(model))
    base_version = store.fingerprint("base_model", project.base_of(model))
    trained_on = [
        t
        for t in project.tasks
        if project.recipe_of(model) is not None and store.fingerprint_if_built("adapter", model, t)
    ]
    evaluated = {}
    for evaluated_on in project.tasks:
        dataset_version = store.fingerprint_if_built("dataset", evaluated_on)
        if dataset_version is None or not trained_on:
            continue
        task = project.tasks[evaluated_on]
        test_rows = read_splits(store.path("dataset", evaluated_on))["test"][: settings.forgetting_examples]
        params = {**plan.evaluation_params(project, evaluated_on), "examples": len(test_rows)}
        base_key = plan.fingerprint("evaluation", params, plan.evaluation_upstream(dataset_version, base_version, None))
        evaluated[evaluated_on] = (
            task,
            test_rows,
            _base_variant(
                project, store, base_key, base_dir, task, test_rows, model, device, settings, log, point_only=True
            ),
        )
    rows = []
    for source in trained_on:
        # One load of each fine-tune scores every task's examples.
        with backend_for_finetune(
            project, store, store.path("adapter", model, source), base_dir, model, source, device, settings
        ) as backend:
            for evaluated_on, (task, test_rows, base) in evaluated.items():
                log(f"evaluating {model!r} fine-tuned on {source!r}, on {evaluated_on!r} ({len(test_rows)} examples)")
                tuned = evaluate_variant(backend, task, test_rows, model, "finetuned", settings, point_only=True)
                metric = task.primary_metric
                rows.append(
                    {
                        "model": model,
                        "trained_on": source,
                        "evaluated_on": evaluated_on,
                        "metric": metric,
                        "n": len(test_rows),
                        "base": base.row[metric],
                        "finetuned": tuned.row[metric],
                        "delta": tuned.row[metric] - base.row[metric],
                    }
                )
    return pd.DataFrame(
        rows, columns=["model", "trained_on", "evaluated_on", "metric", "n", "base", "finetuned", "delta"]
    )


@dataclass(frozen=True)
class StoredEvaluation:
    """A cell's evaluation as its artifact holds it: the table, its fingerprint and its per-example predictions."""

    directory: Path
    table: pd.DataFrame
    fingerprint: str

    def predictions(self) -> pd.DataFrame:
        return pd.read_parquet(self.directory / "predictions.parquet")


def load_evaluations(project: ProjectConfig, store: ArtifactStore, task_name: str) -> dict[str, StoredEvaluation]:
    """The evaluations of ``task_name`` built so far, for every model entry of the configuration."""
    found = {}
    for model in project.models:
        directory = store.path("evaluation", model, task_name)
        manifest = read_manifest(directory)
        if manifest is not None and (directory / TABLE_FILE).exists():
            found[model] = StoredEvaluation(directory, pd.read_parquet(directory / TABLE_FILE), manifest["fingerprint"])
    return found


def comparison_version(evaluation_versions: dict[str, str]) -> str:
    return plan.fingerprint("comparison", {}, dict(sorted(evaluation_versions.items())))


def load_comparisons(project: ProjectConfig, store: ArtifactStore) -> dict[str, pd.DataFrame]:
    """The comparison table of every task compared so far."""
    paths = {task: store.path("comparison", task) / TABLE_FILE for task in project.tasks}
    return {task: pd.read_parquet(path) for task, path in paths.items() if path.exists()}
