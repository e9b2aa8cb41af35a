"""The asset graph, read top to bottom:

dataset (task) -> base_model (model) -> tokenized_splits -> adapter -> merged_model -> gguf_export -> evaluation
(task x model) -> comparison (task).

Each asset loads its inputs, calls one plain-Python function, writes its artifact atomically with a
manifest, and returns metadata. The fingerprint it records as its data version is the staleness
rule ``ftassets run`` uses (see ``ftassets/lineage.py``).
"""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import ValidationError

from ftassets import lineage
from ftassets.artifacts import ArtifactStore, directory_bytes, read_manifest, write_manifest
from ftassets.config import ConfigError, ProjectConfig
from ftassets.config.schemas import API_SOURCES
from ftassets.defs.metadata import table_metadata
from ftassets.defs.partitions import ProjectPartitions, cell_of
from ftassets.defs.resources import ArtifactStoreResource, MlflowResource, ProjectResource, TrainerResource
from ftassets.defs.schedules import refresh_when_upstream_updates
from ftassets.export.export import CHECKS as GGUF_CHECKS
from ftassets.training.recipes import is_cloud, parse_recipe

GROUP = "finetuning"
OWNERS = ["team:ml-platform"]
DATASET_CHECKS = (
    "no_missing_fields",
    "label_balance",
    "no_duplicate_prompts",
    "no_train_test_contamination",
    "length_statistics",
)


class AdapterConfig(dg.Config):
    """Per-run overrides of the model entry's recipe (unset fields keep the recipe's values)."""

    recipe: str | None = None
    learning_rate: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    lr_scheduler: str | None = None
    warmup_ratio: float | None = None
    eval_steps: int | None = None
    save_steps: int | None = None
    logging_steps: int | None = None
    gradient_checkpointing: bool | None = None
    seed: int | None = None


def build_assets(partitions: ProjectPartitions) -> list[dg.AssetsDefinition]:
    task_of_cell = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="task")
    model_of_cell = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")

    @dg.asset(
        partitions_def=partitions.task,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"python", "jsonl"},
        code_version=lineage.CODE_VERSIONS["dataset"],
        check_specs=[dg.AssetCheckSpec(name, asset="dataset", blocking=True) for name in DATASET_CHECKS],
    )
    def dataset(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """Seeded synthetic train / validation / test splits of one task, as JSONL, with quality gates."""
        from ftassets.data import datasets as data
        from ftassets.data.incoming import accepted_rows

        config, store = project.project, artifacts.store
        task = config.tasks[context.partition_key]
        splits, incoming = data.add_incoming(task, data.build_splits(task), accepted_rows(config, task.name))
        outcomes = data.check_splits(task, splits)
        version = lineage.fingerprint("dataset", lineage.dataset_params(config, task.name))
        directory = store.path("dataset", task.name)
        counts = {name: len(rows) for name, rows in splits.items()}
        with store.writing(directory) as staging:
            data.write_splits(staging, splits)
            write_manifest(
                staging,
                asset="dataset",
                partition=task.name,
                fingerprint=version,
                task=task.config.model_dump(mode="json"),
                seed=task.config.seed,
                counts=counts,
                checks={o.name: o.passed for o in outcomes},
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                **{f"{name}_rows": count for name, count in counts.items()},
                **incoming,
                "label_distribution": dg.MetadataValue.json(data.label_distribution(task, splits)),
                "length_statistics": dg.MetadataValue.json(data.length_stats(splits)),
                "preview": dg.MetadataValue.md(data.preview(splits).to_markdown(index=False)),
            },
            data_version=dg.DataVersion(version),
            check_results=[
                dg.AssetCheckResult(
                    check_name=o.name,
                    passed=o.passed,
                    description=o.description,
                    metadata={"details": dg.MetadataValue.json(o.metadata)},
                )
                for o in outcomes
            ],
        )

    @dg.asset(
        partitions_def=partitions.model,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pytorch", "huggingface"},
        code_version=lineage.CODE_VERSIONS["base_model"],
        pool="gpu",
    )
    def base_model(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """The model entry's base: built (embedded) or loaded and validated (Hugging Face), saved once per base.

        Entries that share a base share one directory: the first materialization builds it, the
        others find it current (same fingerprint) and reuse it.
        """
        from ftassets.models.bases import prepare_base

        config, store = project.project, artifacts.store
        base_name = config.base_of(context.partition_key)
        version = lineage.fingerprint("base_model", lineage.base_params(config, base_name))
        directory = store.path("base_model", base_name)
        if config.bases[base_name].source in API_SOURCES:
            return _api_base(config, store, base_name, directory, version)
        with store.lock(f"base_model-{base_name}"):
            manifest = read_manifest(directory)
            built = manifest is None or manifest.get("fingerprint") != version
            if built:
                with store.writing(directory) as staging:
                    summary = prepare_base(base_name, config.bases[base_name], staging, context.log.info)
                    manifest = write_manifest(
                        staging,
                        asset="base_model",
                        base=base_name,
                        fingerprint=version,
                        config=lineage.base_params(config, base_name),
                        summary=summary,
                    )
            else:
                context.log.info(f"base {base_name!r} is current at {directory}; reusing it")
        summary = manifest["summary"]
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "base": base_name,
                "built_in_this_run": built,
                "architecture": summary["architecture"],
                "parameters": summary["parameters"],
                "vocab_size": summary["vocab_size"],
                "special_tokens": dg.MetadataValue.json(
                    {k: summary[k] for k in ("bos_token", "eos_token", "pad_token")}
                ),
                "chat_template": dg.MetadataValue.md(f"```jinja\n{summary['chat_template']}\n```"),
                "size_mb": round(directory_bytes(directory) / 1e6, 2),
            },
            data_version=dg.DataVersion(version),
        )

    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[
            dg.AssetDep(dataset, partition_mapping=task_of_cell),
            dg.AssetDep(base_model, partition_mapping=model_of_cell),
        ],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"huggingface", "parquet"},
        code_version=lineage.CODE_VERSIONS["tokenized_splits"],
        check_specs=[dg.AssetCheckSpec("no_fully_masked_examples", asset="tokenized_splits", blocking=True)],
    )
    def tokenized_splits(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """Train and validation splits rendered with the base's chat template; loss only on answer tokens (EOS kept).

        For a dpo recipe, also the same prompts as preference pairs (reference answer chosen, wrong answer rejected)."""
        from transformers import AutoTokenizer

        from ftassets.data.datasets import read_splits
        from ftassets.training.tokenize import save_tokenized, tokenize_examples

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        recipe = config.recipe_of(model)
        if recipe is None:
            return _not_applicable(
                "tokenized_splits", f"model {model!r} has no recipe: nothing to train", check="no_fully_masked_examples"
            )
        if is_cloud(recipe):
            return _not_applicable(
                "tokenized_splits",
                f"{recipe.method} trains in the cloud from the dataset's JSONL",
                check="no_fully_masked_examples",
            )
        task = config.tasks[task_name]
        base_dir = store.path("base_model", config.base_of(model))
        upstream = _upstream_versions(
            store, dataset=("dataset", task_name), base_model=("base_model", config.base_of(model))
        )
        version = lineage.fingerprint("tokenized_splits", lineage.tokenized_params(config, task_name, model), upstream)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        splits = read_splits(store.path("dataset", task_name))
        tokenized, stats = {}, {}
        for name in ("train", "validation"):
            rows = splits[name]
            tokenized[name], stats[name] = tokenize_examples(
                tokenizer,
                [r["prompt"] for r in rows],
                [r["answer"] for r in rows],
                recipe.max_seq_length,
                task.config.system_prompt,
            )
        if recipe.method == "dpo":
            from ftassets.training.dpo import preference_splits

            preference, preference_stats = preference_splits(
                tokenizer,
                {name: splits[name] for name in ("train", "validation")},
                recipe.max_seq_length,
                task.config.system_prompt,
            )
            tokenized |= preference
            stats |= preference_stats
        directory = store.path("tokenized_splits", model, task_name)
        with store.writing(directory) as staging:
            save_tokenized(staging, tokenized)
            (staging / "chat_template.jinja").write_text(tokenizer.chat_template)
            write_manifest(
                staging,
                asset="tokenized_splits",
                partition=[task_name, model],
                fingerprint=version,
                upstream=upstream,
                stats=stats,
            )
        all_masked = sum(s["all_masked"] for s in stats.values())
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "stats": dg.MetadataValue.json(stats),
                "train_tokens": stats["train"]["tokens"],
                "truncated": sum(s["truncated"] for s in stats.values()),
                "chat_template": dg.MetadataValue.md(f"```jinja\n{tokenizer.chat_template}\n```"),
            },
            data_version=dg.DataVersion(version),
            check_results=[
                dg.AssetCheckResult(
                    check_name="no_fully_masked_examples",
                    passed=all_masked == 0,
                    description=f"{all_masked} example(s) have every label masked"
                    + (
                        "" if all_masked == 0 else f"; raise max_seq_length (now {recipe.max_seq_length}) in the recipe"
                    ),
                )
            ],
        )

    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[tokenized_splits],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pytorch", "peft"},
        code_version=lineage.CODE_VERSIONS["adapter"],
        pool="gpu",
    )
    def adapter(
        context: dg.AssetExecutionContext,
        config: AdapterConfig,
        project: ProjectResource,
        artifacts: ArtifactStoreResource,
        trainer: TrainerResource,
        mlflow: MlflowResource,
    ):
        """The fine-tuned weights of one (task, model) cell: an adapter, or full weights, per the recipe's method.

        Tracked in MLflow as one run (recipe, per-step metrics, final metrics, the adapter itself)."""
        from ftassets.plots import loss_curve, markdown_image

        project_config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        if project_config.recipe_of(model) is None and config.recipe is None:
            return _not_applicable("adapter", f"model {model!r} has no recipe: it is evaluated as a base model only")
        recipe = resolve_recipe(project_config, model, config)
        context.log.info(f"recipe for {model}/{task_name}: {recipe.model_dump_json()}")
        if is_cloud(recipe):
            return _cloud_adapter(context, project_config, store, model, task_name, recipe, mlflow)
        upstream = _upstream_versions(store, tokenized_splits=("tokenized_splits", model, task_name))
        version = lineage.fingerprint("adapter", lineage.recipe_params(recipe), upstream)
        directory = store.path("adapter", model, task_name)
        tracker = mlflow.tracker()
        tracked = (
            tracker.start_run(
                f"{model}/{task_name}",
                tags={
                    "dagster.run_id": context.run_id,
                    "dagster.partition": context.partition_key,
                    "ftassets.task": task_name,
                    "ftassets.model": model,
                    "ftassets.method": recipe.method,
                    "ftassets.fingerprint": version,
                },
                params=recipe.model_dump(mode="json"),
            )
            if tracker
            else None
        )
        try:
            with store.writing(directory) as staging:
                result = trainer.train(
                    context,
                    store.path("base_model", project_config.base_of(model)),
                    store.path("tokenized_splits", model, task_name),
                    recipe,
                    staging,
                    store.work_path("adapter", model, task_name),
                    tracked,
                )
                write_manifest(
                    staging,
                    asset="adapter",
                    partition=[task_name, model],
                    fingerprint=version,
                    upstream=upstream,
                    recipe=recipe.model_dump(mode="json"),
                    training=result.to_dict(),
                    mlflow_run_id=tracked.run_id if tracked else None,
                )
        except BaseException as error:
            if tracked:
                tracker.fail(tracked, f"{type(error).__name__}: {error}")
            raise
        if tracked:
            tracker.finish(tracked, _final_metrics(result), directory)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "strategy": recipe.method,
                "device": result.device,
                "trainable_parameters": result.trainable_params,
                "total_parameters": result.total_params,
                "steps": result.steps,
                "tokens_seen": result.tokens_seen,
                "tokens_per_second": round(result.tokens_per_second, 1),
                "wall_seconds": round(result.wall_seconds, 1),
                "peak_memory_mb": round(result.peak_memory_mb, 1),
                "final_train_loss": result.final_train_loss,
                **({"final_val_loss": result.final_val_loss} if result.final_val_loss is not None else {}),
                "loss_curve": dg.MetadataValue.md(
                    markdown_image(
                        loss_curve(result.train_loss, result.val_loss, f"{model} on {task_name}"), "loss curve"
                    )
                    + "\n\n"
                    + _loss_table(result.train_loss, result.val_loss)
                ),
                "recipe": dg.MetadataValue.json(recipe.model_dump(mode="json")),
                "packing": result.packing,
                **({"mlflow_run_id": tracked.run_id, "mlflow_tracking_uri": tracked.tracking_uri} if tracked else {}),
            },
            data_version=dg.DataVersion(version),
        )

    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[adapter],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pytorch", "huggingface"},
        code_version=lineage.CODE_VERSIONS["merged_model"],
    )
    def merged_model(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """The adapter merged into the base's full-precision weights, saved with tokenizer and chat template."""
        from ftassets.training.strategies import strategy_for

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        if config.recipe_of(model) is None:
            return _not_applicable("merged_model", f"model {model!r} has no recipe: nothing to merge")
        if getattr(config.recipe_of(model), "cloud", False):
            return _not_applicable("merged_model", "a cloud fine-tune is served by its deployment: no weights to merge")
        adapter_dir = store.path("adapter", model, task_name)
        upstream = _upstream_versions(store, adapter=("adapter", model, task_name))
        adapter_manifest = read_manifest(adapter_dir)
        recipe = parse_recipe(adapter_manifest["recipe"])
        strategy = strategy_for(recipe)
        if not strategy.mergeable:
            return _not_applicable(
                "merged_model",
                f"method {recipe.method!r} cannot be merged into weights; evaluation applies the adapter",
            )
        version = lineage.fingerprint("merged_model", {}, upstream)
        directory = store.path("merged_model", model, task_name)
        with store.writing(directory) as staging:
            summary = strategy.merge(adapter_dir, store.path("base_model", config.base_of(model)), staging)
            write_manifest(
                staging,
                asset="merged_model",
                partition=[task_name, model],
                fingerprint=version,
                upstream=upstream,
                summary=summary,
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "method": recipe.method,
                "size_mb": round(directory_bytes(directory) / 1e6, 2),
            },
            data_version=dg.DataVersion(version),
        )

    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[merged_model, dg.AssetDep(dataset, partition_mapping=task_of_cell)],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"gguf"},
        code_version=lineage.CODE_VERSIONS["gguf_export"],
        check_specs=[dg.AssetCheckSpec(name, asset="gguf_export", blocking=True) for name in GGUF_CHECKS],
    )
    def gguf_export(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """The merged model as f16, q8_0 and q4_k_m GGUF files for llama.cpp and Ollama, with a Modelfile, behind a
        parity gate: identical token ids, chat template and special ids, and q8_0 greedy decoding that agrees
        with transformers on the test prompts."""
        from ftassets.data.datasets import read_splits
        from ftassets.export.export import ExportSettings, export_gguf
        from ftassets.export.variants import not_exportable_reason
        from ftassets.training.tokenize import chat_messages

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        if (reason := not_exportable_reason(config, model)) is not None:
            return dg.MaterializeResult(
                metadata={"applicable": False, "reason": reason},
                data_version=dg.DataVersion(lineage.not_applicable("gguf_export")),
                check_results=[
                    dg.AssetCheckResult(check_name=name, passed=True, description=f"not applicable: {reason}")
                    for name in GGUF_CHECKS
                ],
            )
        task, settings = config.tasks[task_name], ExportSettings()
        upstream = _upstream_versions(store, merged_model=("merged_model", model, task_name))
        version = lineage.fingerprint("gguf_export", lineage.export_params(), upstream)
        test_rows = read_splits(store.path("dataset", task_name))["test"][: settings.parity_prompts]
        conversations = [chat_messages(row["prompt"], system_prompt=task.config.system_prompt) for row in test_rows]
        directory = store.path("gguf_export", model, task_name)
        with store.writing(directory) as staging:
            result = export_gguf(
                store.path("merged_model", model, task_name),
                staging,
                f"{model}-{task_name}",
                conversations,
                settings,
                context.log.info,
            )
            write_manifest(
                staging,
                asset="gguf_export",
                partition=[task_name, model],
                fingerprint=version,
                upstream=upstream,
                summary=result.summary,
            )
        quantizations = result.summary["quantizations"]
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "files": dg.MetadataValue.md(_gguf_table(result.summary)),
                **{f"{quant}_size_mb": facts["size_mb"] for quant, facts in quantizations.items()},
                **{
                    f"{quant}_greedy_agreement": g["agreement"]
                    for quant, g in result.summary["parity"]["greedy"].items()
                },
                **{
                    f"{quant}_top1_agreement": s["top1_agreement"]
                    for quant, s in result.summary["parity"]["logits"].items()
                },
                "fallback_tensors": dg.MetadataValue.json({q: f["fallback_tensors"] for q, f in quantizations.items()}),
                "modelfile": dg.MetadataValue.path(str(directory / "Modelfile"))
                if result.summary["modelfile"]
                else result.summary["modelfile_problem"],
            },
            data_version=dg.DataVersion(version),
            check_results=[
                dg.AssetCheckResult(
                    check_name=c.name,
                    passed=c.passed,
                    description=c.description,
                    metadata={"details": dg.MetadataValue.json(c.metadata)},
                )
                for c in result.checks
            ],
        )

    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[
            merged_model,
            gguf_export,
            adapter,
            dg.AssetDep(dataset, partition_mapping=task_of_cell),
            dg.AssetDep(base_model, partition_mapping=model_of_cell),
        ],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=lineage.CODE_VERSIONS["evaluation"],
        io_manager_key="table_io_manager",
        pool="gpu",
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        project: ProjectResource,
        artifacts: ArtifactStoreResource,
        trainer: TrainerResource,
    ) -> dg.Output[pd.DataFrame]:
        """Base and fine-tuned variants of one model entry scored on the task's frozen test split."""
        from ftassets.evaluation.runs import evaluate_cell

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        cell = evaluate_cell(config, store, task_name, model, trainer.resolved_device(), context.log.info)
        table = cell.table
        primary = config.tasks[task_name].primary_metric
        return dg.Output(
            table,
            metadata={
                "predictions": dg.MetadataValue.path(str(cell.predictions_path)),
                "table": dg.MetadataValue.md(
                    table.drop(columns=["fingerprint"]).to_markdown(index=False, floatfmt=".3f")
                ),
                **{f"{variant}_{primary}": float(score) for variant, score in zip(table.variant, table[primary])},
            },
            data_version=dg.DataVersion(cell.fingerprint),
        )

    @dg.asset(
        partitions_def=partitions.task,
        ins={
            "evaluation": dg.AssetIn(partition_mapping=task_of_cell, metadata={"allow_missing_partitions": True}),
        },
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=lineage.CODE_VERSIONS["comparison"],
        io_manager_key="table_io_manager",
        automation_condition=refresh_when_upstream_updates(),
    )
    def comparison(
        context: dg.AssetExecutionContext,
        evaluation: dict[str, pd.DataFrame],
        project: ProjectResource,
        artifacts: ArtifactStoreResource,
        mlflow: MlflowResource,
    ) -> dg.Output[pd.DataFrame]:
        """Every model entry of the task, base against fine-tuned: metrics with bootstrap intervals, the gain on
        the primary metric and its significance, latency and cost; plus a markdown and a self-contained HTML
        report with figures and each fine-tuned model's worst examples, also logged to MLflow as one run."""
        from ftassets.evaluation.evaluate import comparison_table, markdown_table, summary_columns
        from ftassets.evaluation.report import render

        config, store = project.project, artifacts.store
        task = config.tasks[context.partition_key]
        by_model = {
            partitions.task_model.get_partition_key_from_str(key).keys_by_dimension["model"]: frame
            for key, frame in evaluation.items()
        }
        table = comparison_table(task, list(config.models), by_model)
        version = comparison_version({model: frame["fingerprint"].iloc[0] for model, frame in by_model.items()})
        missing = sorted(set(table.loc[table.status == "missing", "model"]))
        predictions = [store.path("evaluation", model, task.name) / "predictions.parquet" for model in by_model]
        predictions = pd.concat(
            [pd.read_parquet(path) for path in predictions if path.exists()] or [pd.DataFrame()], ignore_index=True
        )
        report = render(task, table, predictions)
        directory = store.path("comparison", task.name)
        with store.writing(directory) as staging:
            report.write(staging)
            write_manifest(staging, asset="comparison", partition=task.name, fingerprint=version)
        tracked = mlflow.log_report(
            context, f"comparison/{task.name}", directory, comparison_metrics(table, task.primary_metric)
        )
        return dg.Output(
            table,
            metadata={
                "report": dg.MetadataValue.md(report.markdown),
                **({"mlflow_run_id": tracked.run_id, "mlflow_tracking_uri": tracked.tracking_uri} if tracked else {}),
                "report_html": dg.MetadataValue.path(str(directory / "report.html")),
                "table": dg.MetadataValue.md(markdown_table(table)),
                "summary": table_metadata(table[summary_columns(task, table)]),
                "primary_metric": task.primary_metric,
                "missing_models": dg.MetadataValue.json(missing),
            },
            data_version=dg.DataVersion(version),
        )

    @dg.asset(
        ins={"comparison": dg.AssetIn(metadata={"allow_missing_partitions": True})},
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=lineage.CODE_VERSIONS["leaderboard"],
        io_manager_key="table_io_manager",
        automation_condition=refresh_when_upstream_updates(),
    )
    def leaderboard(comparison: dict[str, pd.DataFrame], project: ProjectResource) -> dg.Output[pd.DataFrame]:
        """Across every task compared so far: the best row per task, and each model entry's average rank."""
        from ftassets.evaluation.evaluate import leaderboard as rank_models
        from ftassets.evaluation.evaluate import markdown_table

        config = project.project
        best, board = rank_models(comparison, {task: config.tasks[task].primary_metric for task in comparison})
        return dg.Output(
            board,
            metadata={
                "best_per_task": dg.MetadataValue.md(markdown_table(best)),
                "ranking": dg.MetadataValue.md(markdown_table(board)),
                "tasks": dg.MetadataValue.json(sorted(comparison)),
            },
        )

    @dg.asset(
        partitions_def=partitions.model,
        deps=[
            dg.AssetDep(dataset, partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(merged_model, partition_mapping=model_of_cell),
            dg.AssetDep(adapter, partition_mapping=model_of_cell),
        ],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=lineage.CODE_VERSIONS["forgetting"],
        io_manager_key="table_io_manager",
        pool="gpu",
    )
    def forgetting(
        context: dg.AssetExecutionContext,
        project: ProjectResource,
        artifacts: ArtifactStoreResource,
        trainer: TrainerResource,
    ) -> dg.Output[pd.DataFrame]:
        """What fine-tuning on one task cost on the others: each fine-tune of the model entry and its base, scored
        on every task's test split (its first ``evaluation.forgetting_examples``), as a trained-on x evaluated-on matrix."""
        from ftassets.evaluation.runs import evaluate_forgetting, forgetting_version

        config, store = project.project, artifacts.store
        model = context.partition_key
        table = evaluate_forgetting(config, store, model, trainer.resolved_device(), context.log.info)
        matrix = table.pivot(index="trained_on", columns="evaluated_on", values="delta") if not table.empty else table
        return dg.Output(
            table,
            metadata={
                "delta_matrix": dg.MetadataValue.md(
                    matrix.to_markdown(floatfmt="+.3f") if not table.empty else "no fine-tuned task yet"
                ),
                "rows": len(table),
            },
            data_version=dg.DataVersion(forgetting_version(config, store, model)),
        )

    return [
        dataset,
        base_model,
        tokenized_splits,
        adapter,
        merged_model,
        gguf_export,
        evaluation,
        comparison,
        leaderboard,
        forgetting,
    ]


def comparison_metrics(table: pd.DataFrame, primary: str) -> dict[str, float]:
    """The primary metric of every evaluated row, as MLflow metrics named ``<primary>/<model>/<variant>``."""
    evaluated = table[table.status == "ok"]
    return {
        f"{primary}/{m}/{v}": float(score)
        for m, v, score in zip(evaluated.model, evaluated.variant, evaluated[primary])
    }


def comparison_version(evaluation_versions: dict[str, str]) -> str:
    return lineage.fingerprint("comparison", {}, dict(sorted(evaluation_versions.items())))


def resolve_recipe(project: ProjectConfig, model: str, overrides: AdapterConfig) -> Any:
    """The model entry's recipe (or the one the run names) with the run's overrides, validated again."""
    name = overrides.recipe or project.models[model].recipe
    if name not in project.recipes:
        raise ConfigError(
            f"run config ops.adapter.config.recipe: unknown recipe {name!r}; defined in experiments.yaml: {', '.join(sorted(project.recipes))}"
        )
    changes = {k: v for k, v in overrides.model_dump().items() if v is not None and k != "recipe"}
    try:
        return parse_recipe({**project.recipes[name].model_dump(), **changes})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in error.errors()
        )
        raise ConfigError(f"run config ops.adapter.config for recipe {name!r}: {problems}") from None


def _api_base(
    config: ProjectConfig, store: ArtifactStore, base_name: str, directory, version: str
) -> dg.MaterializeResult:
    """An API base has no weights: its artifact is the record of the endpoint, deployment and price it names.
    Resolving it checks the credentials' variables first, so a missing one fails here, at once, by name."""
    from ftassets.azure.settings import resolve_base

    target = resolve_base(config, base_name)
    with store.lock(f"base_model-{base_name}"), store.writing(directory) as staging:
        write_manifest(
            staging,
            asset="base_model",
            base=base_name,
            fingerprint=version,
            config=lineage.base_params(config, base_name),
            api=target.describe(),
        )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(directory)),
            "base": base_name,
            "weights": "none: served by the API",
            "api": dg.MetadataValue.json(target.describe()),
        },
        data_version=dg.DataVersion(version),
    )


def _cloud_adapter(
    context, project: ProjectConfig, store: ArtifactStore, model: str, task_name: str, recipe, mlflow
) -> dg.MaterializeResult:
    """A cloud fine-tune: JSONL export, upload, job (events to this log), results.csv, deployment; tracked in MLflow."""
    from ftassets.azure.finetuning import log_to_mlflow
    from ftassets.azure.lifecycle import fine_tune_and_deploy
    from ftassets.data.datasets import read_splits
    from ftassets.plots import loss_curve, markdown_image

    upstream = lineage.cloud_adapter_upstream(
        store.fingerprint("dataset", task_name), store.fingerprint("base_model", project.base_of(model))
    )
    version = lineage.fingerprint("adapter", lineage.recipe_params(recipe), upstream)
    tracker = mlflow.tracker()
    tracked = (
        tracker.start_run(
            f"{model}/{task_name}",
            params=recipe.model_dump(mode="json"),
            tags={
                "dagster.run_id": context.run_id,
                "dagster.partition": context.partition_key,
                "ftassets.task": task_name,
                "ftassets.model": model,
                "ftassets.method": recipe.method,
                "ftassets.fingerprint": version,
            },
        )
        if tracker
        else None
    )
    directory = store.path("adapter", model, task_name)
    try:
        with store.writing(directory) as staging:
            tuned = fine_tune_and_deploy(
                project,
                model,
                task_name,
                recipe,
                read_splits(store.path("dataset", task_name)),
                staging,
                version,
                context.log.info,
                work_dir=store.work_path("adapter", model, task_name),
            )
            write_manifest(
                staging,
                asset="adapter",
                partition=[task_name, model],
                fingerprint=version,
                upstream=upstream,
                recipe=recipe.model_dump(mode="json"),
                mlflow_run_id=tracked.run_id if tracked else None,
                **tuned.manifest_facts(),
            )
    except BaseException as error:
        if tracked:
            tracker.fail(tracked, f"{type(error).__name__}: {error}")
        raise
    outcome, deployment = tuned.outcome, tuned.deployment
    if tracked:
        log_to_mlflow(tracked, outcome)
        tracker.finish(
            tracked,
            {
                "trained_tokens": outcome.trained_tokens,
                "training_cost_usd": tuned.training_cost_usd,
                "hosting_per_hour_usd": deployment.hosting_per_hour_usd,
                "wall_seconds": outcome.seconds,
            },
            directory,
        )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(directory)),
            "strategy": recipe.method,
            "job_id": outcome.job_id,
            "fine_tuned_model": outcome.fine_tuned_model,
            "statuses": dg.MetadataValue.json(outcome.statuses_seen),
            "trained_tokens": outcome.trained_tokens,
            "training_cost_usd": tuned.training_cost_usd,
            "deployment": deployment.name,
            "hosting_per_hour_usd": deployment.hosting_per_hour_usd,
            "deployment_expires": deployment.expires,
            "loss_curve": dg.MetadataValue.md(
                markdown_image(
                    loss_curve(outcome.train_loss, outcome.val_loss, f"{model} on {task_name}"), "loss curve"
                )
                + "\n\n"
                + _loss_table(outcome.train_loss, outcome.val_loss)
            ),
            "recipe": dg.MetadataValue.json(recipe.model_dump(mode="json")),
            **({"mlflow_run_id": tracked.run_id, "mlflow_tracking_uri": tracked.tracking_uri} if tracked else {}),
        },
        data_version=dg.DataVersion(version),
    )


def _upstream_versions(store: ArtifactStore, **assets: tuple[str, ...]) -> dict[str, str]:
    return {label: store.fingerprint(*location) for label, location in assets.items()}


def _not_applicable(asset: str, reason: str, check: str | None = None) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"applicable": False, "reason": reason},
        data_version=dg.DataVersion(lineage.not_applicable(asset)),
        check_results=[dg.AssetCheckResult(check_name=check, passed=True, description=f"not applicable: {reason}")]
        if check
        else None,
    )


def _gguf_table(summary: dict[str, Any]) -> str:
    rows = [
        "| quant type | file | MB | tensor types | greedy agreement | top-1 agreement | max abs logit delta |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for quant, facts in summary["quantizations"].items():
        greedy, logits = summary["parity"]["greedy"][quant], summary["parity"]["logits"][quant]
        rows.append(
            f"| {quant} | {facts['file']} | {facts['size_mb']} | {facts['tensor_types']} | {greedy['agreement']:.3f} | "
            f"{logits['top1_agreement']:.3f} | {logits['max_abs_logit_delta']:.4f} |"
        )
    return "\n".join(rows)


def _final_metrics(result) -> dict[str, float]:
    keys = (
        "final_train_loss",
        "final_val_loss",
        "tokens_per_second",
        "wall_seconds",
        "peak_memory_mb",
        "tokens_seen",
        "steps",
        "trainable_params",
        "total_params",
    )
    return {key: getattr(result, key) for key in keys}


def _loss_table(train_loss: list[tuple[int, float]], val_loss: list[tuple[int, float]]) -> str:
    validation, training = dict(val_loss), dict(train_loss)
    rows = ["| step | train loss | validation loss |", "| --- | --- | --- |"]
    rows += [
        f"| {step} | {loss:.4f} | {validation[step]:.4f} |" if step in validation else f"| {step} | {loss:.4f} | |"
        for step, loss in train_loss
    ]
    rows += [f"| {step} | | {loss:.4f} |" for step, loss in val_loss if step not in training]
    return "\n".join(rows)
