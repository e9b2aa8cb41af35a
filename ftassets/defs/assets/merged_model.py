"""``merged_model`` (per task x model): the adapter folded into the base's full-precision weights."""

import dagster as dg

from ftassets import plan
from ftassets.artifacts import directory_bytes, read_manifest, write_manifest
from ftassets.defs.assets.common import GROUP, OWNERS, config_key, not_applicable, upstream_versions
from ftassets.defs.partitions import ProjectPartitions, cell_of
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource
from ftassets.training.recipes import parse_recipe


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[config_key("merged_model"), "adapter"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pytorch", "huggingface"},
        code_version=plan.CODE_VERSIONS["merged_model"],
    )
    def merged_model(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """The adapter merged into the base's full-precision weights, saved with tokenizer and chat template."""
        from ftassets.training.strategies import strategy_for

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        step = plan.cell_plan(config, task_name, model)["merged_model"]
        if not step.applies:
            return not_applicable(step)
        adapter_dir = store.path("adapter", model, task_name)
        upstream = upstream_versions(store, adapter=("adapter", model, task_name))
        recipe = parse_recipe(read_manifest(adapter_dir)["recipe"])
        version = plan.fingerprint("merged_model", step.params, upstream)
        directory = store.path("merged_model", model, task_name)
        with store.writing(directory) as staging:
            summary = strategy_for(recipe).merge(adapter_dir, store.path("base_model", config.base_of(model)), staging)
            write_manifest(
                staging, asset="merged_model", partition=[task_name, model], fingerprint=version, upstream=upstream,
                summary=summary,
            )  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "method": recipe.method,
                "size_mb": round(directory_bytes(directory) / 1e6, 2),
            },
            data_version=dg.DataVersion(version),
        )

    return merged_model
