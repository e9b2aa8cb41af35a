"""``adapter`` (per task x model): the fine-tuned weights of one cell, trained locally or by a cloud service."""

from typing import Any

import dagster as dg
from pydantic import ValidationError

from ftassets import plan
from ftassets.artifacts import write_manifest
from ftassets.config import ConfigError, ProjectConfig
from ftassets.defs.assets.common import GROUP, OWNERS, config_key, not_applicable, upstream_versions
from ftassets.defs.partitions import ProjectPartitions, cell_of
from ftassets.defs.resources import ArtifactStoreResource, MlflowResource, ProjectResource, TrainerResource
from ftassets.training.recipes import is_cloud, parse_recipe


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


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[config_key("adapter"), "tokenized_splits"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pytorch", "peft"},
        code_version=plan.CODE_VERSIONS["adapter"],
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
        """The fine-tuned weights of one (task, model) cell: an adapter, or full weights, per the recipe's method;
        for a cloud method, the service's job and the deployment of its result.

        Tracked in MLflow as one run (recipe, per-step metrics, final metrics, the adapter itself)."""
        project_config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        step = plan.cell_plan(project_config, task_name, model)["adapter"]
        if not step.applies and config.recipe is None:
            return not_applicable(step)
        recipe = resolve_recipe(project_config, model, config)
        context.log.info(f"recipe for {model}/{task_name}: {recipe.model_dump_json()}")
        train = _train_in_cloud if is_cloud(recipe) else _train_locally
        return train(context, project_config, store, model, task_name, recipe, trainer, mlflow)

    return adapter


def resolve_recipe(project: ProjectConfig, model: str, overrides: AdapterConfig) -> Any:
    """The model entry's recipe (or the one the run names) with the run's overrides, validated again; a seed repeat
    trains with the seed its index in the repeat group raises (the recipe's or the run's)."""
    name = overrides.recipe or project.models[model].recipe
    if name not in project.recipes:
        raise ConfigError(
            f"run config ops.adapter.config.recipe: unknown recipe {name!r}; "
            f"defined in experiments.yaml: {', '.join(sorted(project.recipes))}"
        )
    changes = {k: v for k, v in overrides.model_dump().items() if v is not None and k != "recipe"}
    if project.repeat_index(model):
        changes["seed"] = project.training_seed(model, changes.get("seed", project.recipes[name].seed))
    try:
        return parse_recipe({**project.recipes[name].model_dump(), **changes})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in error.errors()
        )
        raise ConfigError(f"run config ops.adapter.config for recipe {name!r}: {problems}") from None


def _tags(model: str, task_name: str, recipe: Any, version: str) -> dict[str, str]:
    return {"ftassets.task": task_name, "ftassets.model": model, "ftassets.method": recipe.method,
            "ftassets.fingerprint": version}  # fmt: skip


def _train_locally(context, project, store, model, task_name, recipe, trainer, mlflow) -> dg.MaterializeResult:
    from ftassets.plots import loss_curve, markdown_image

    upstream = upstream_versions(store, tokenized_splits=("tokenized_splits", model, task_name))
    version = plan.fingerprint("adapter", plan.recipe_params(recipe), upstream)
    directory = store.path("adapter", model, task_name)
    params = recipe.model_dump(mode="json")
    with mlflow.tracked_run(context, f"{model}/{task_name}", params, _tags(model, task_name, recipe, version)) as run:
        with store.writing(directory) as staging:
            result = trainer.train(
                context,
                store.path("base_model", project.base_of(model)),
                store.path("tokenized_splits", model, task_name),
                recipe,
                staging,
                store.work_path("adapter", model, task_name),
                run,
            )
            write_manifest(
                staging, asset="adapter", partition=[task_name, model], fingerprint=version, upstream=upstream,
                recipe=params, training=result.to_dict(), mlflow_run_id=run.run_id if run else None,
            )  # fmt: skip
        if run:
            run.finish(_final_metrics(result), directory)
    curve = markdown_image(loss_curve(result.train_loss, result.val_loss, f"{model} on {task_name}"), "loss curve")
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
            "loss_curve": dg.MetadataValue.md(curve + "\n\n" + _loss_table(result.train_loss, result.val_loss)),
            "recipe": dg.MetadataValue.json(params),
            "packing": result.packing,
            **_mlflow_metadata(run),
        },
        data_version=dg.DataVersion(version),
    )


def _train_in_cloud(context, project, store, model, task_name, recipe, trainer, mlflow) -> dg.MaterializeResult:
    """A cloud fine-tune: JSONL export, upload, job (events to this log), results.csv, deployment."""
    from ftassets.azure.finetuning import log_to_mlflow
    from ftassets.azure.lifecycle import fine_tune_and_deploy
    from ftassets.data.datasets import read_splits
    from ftassets.plots import loss_curve, markdown_image

    upstream = plan.cloud_adapter_upstream(
        store.fingerprint("dataset", task_name), store.fingerprint("base_model", project.base_of(model))
    )
    version = plan.fingerprint("adapter", plan.recipe_params(recipe), upstream)
    directory = store.path("adapter", model, task_name)
    params = recipe.model_dump(mode="json")
    with mlflow.tracked_run(context, f"{model}/{task_name}", params, _tags(model, task_name, recipe, version)) as run:
        with store.writing(directory) as staging:
            splits = read_splits(store.path("dataset", task_name))
            work_dir = store.work_path("adapter", model, task_name)
            tuned = fine_tune_and_deploy(
                project, model, task_name, recipe, splits, staging, version, context.log.info, work_dir=work_dir
            )
            write_manifest(
                staging, asset="adapter", partition=[task_name, model], fingerprint=version, upstream=upstream,
                recipe=params, mlflow_run_id=run.run_id if run else None, **tuned.manifest_facts(),
            )  # fmt: skip
        outcome, deployment = tuned.outcome, tuned.deployment
        if run:
            log_to_mlflow(run.ref, outcome)
            run.finish(
                {"trained_tokens": outcome.trained_tokens, "training_cost_usd": tuned.training_cost_usd,
                 "hosting_per_hour_usd": deployment.hosting_per_hour_usd, "wall_seconds": outcome.seconds},
                directory,
            )  # fmt: skip
    curve = markdown_image(loss_curve(outcome.train_loss, outcome.val_loss, f"{model} on {task_name}"), "loss curve")
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
            "loss_curve": dg.MetadataValue.md(curve + "\n\n" + _loss_table(outcome.train_loss, outcome.val_loss)),
            "recipe": dg.MetadataValue.json(params),
            **_mlflow_metadata(run),
        },
        data_version=dg.DataVersion(version),
    )


def _mlflow_metadata(run) -> dict[str, str]:
    return {"mlflow_run_id": run.run_id, "mlflow_tracking_uri": run.tracking_uri} if run else {}


def _final_metrics(result) -> dict[str, float]:
    keys = ("final_train_loss", "final_val_loss", "tokens_per_second", "wall_seconds", "peak_memory_mb", "tokens_seen",
            "steps", "trainable_params", "total_params")  # fmt: skip
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
