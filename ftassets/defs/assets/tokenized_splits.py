"""``tokenized_splits`` (per task x model): the splits rendered with the base's chat template."""

import dagster as dg

from ftassets import plan
from ftassets.artifacts import write_manifest
from ftassets.data.datasets import CheckOutcome
from ftassets.defs.assets.common import (
    GROUP,
    MODEL_OF_CELL,
    OWNERS,
    TASK_OF_CELL,
    blocked,
    config_key,
    not_applicable,
    upstream_versions,
)
from ftassets.defs.partitions import ProjectPartitions, cell_of
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource

CHECK = "no_fully_masked_examples"


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[
            config_key("tokenized_splits"),
            dg.AssetDep("dataset", partition_mapping=TASK_OF_CELL),
            dg.AssetDep("base_model", partition_mapping=MODEL_OF_CELL),
        ],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"huggingface", "parquet"},
        code_version=plan.CODE_VERSIONS["tokenized_splits"],
        check_specs=[dg.AssetCheckSpec(CHECK, asset="tokenized_splits", blocking=True)],
    )
    def tokenized_splits(context: dg.AssetExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource):
        """Train and validation splits rendered with the base's chat template; loss only on answer tokens (EOS kept).

        For a method that trains against a reference model (DPO), also the same prompts as preference pairs
        (reference answer chosen, wrong answer rejected)."""
        from ftassets.data.datasets import read_splits
        from ftassets.loading import load_tokenizer
        from ftassets.tasks import task_type_for
        from ftassets.training.splits import tokenize_for_recipe
        from ftassets.training.tokenize import save_tokenized

        config, store = project.project, artifacts.store
        task_name, model = cell_of(context)
        step = plan.cell_plan(config, task_name, model)["tokenized_splits"]
        if not step.applies:
            return not_applicable(step, checks=(CHECK,))
        recipe, base = config.recipe_of(model), config.base_of(model)
        upstream = upstream_versions(store, dataset=("dataset", task_name), base_model=("base_model", base))
        version = plan.fingerprint("tokenized_splits", step.params, upstream)
        tokenizer = load_tokenizer(store.path("base_model", base))
        splits = read_splits(store.path("dataset", task_name))
        system_prompt = config.tasks[task_name].config.system_prompt
        loss_on = task_type_for(config.tasks[task_name]).loss_on
        over_length = config.tasks[task_name].config.over_length or "truncate"
        tokenized, stats = tokenize_for_recipe(tokenizer, recipe, splits, system_prompt, loss_on, over_length)
        all_masked = sum(s["all_masked"] for s in stats.values())
        directory = store.path("tokenized_splits", model, task_name)
        if all_masked:
            directory = store.rejected_path("tokenized_splits", model, task_name)
        with store.writing(directory) as staging:
            save_tokenized(staging, tokenized)
            (staging / "chat_template.jinja").write_text(tokenizer.chat_template)
            write_manifest(
                staging, asset="tokenized_splits", partition=[task_name, model], fingerprint=version,
                upstream=upstream, stats=stats,
            )  # fmt: skip
        advice = "" if all_masked == 0 else f"; raise max_seq_length (now {recipe.max_seq_length}) in the recipe"
        if all_masked:
            failed = [CheckOutcome(CHECK, False, f"{all_masked} example(s) have every label masked{advice}")]
            raise blocked("tokenized_splits", f"{model}|{task_name}", failed, directory)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(directory)),
                "stats": dg.MetadataValue.json(stats),
                "train_tokens": stats["train"]["tokens"],
                "truncated": sum(s["truncated"] for s in stats.values()),
                "over_length": f"{over_length} (rows longer than max_seq_length {recipe.max_seq_length})",
                "dropped_over_length": sum(s.get("dropped_over_length", 0) for s in stats.values()),
                "chat_template": dg.MetadataValue.md(f"```jinja\n{tokenizer.chat_template}\n```"),
            },
            data_version=dg.DataVersion(version),
            check_results=[
                dg.AssetCheckResult(
                    check_name=CHECK,
                    passed=all_masked == 0,
                    description=f"{all_masked} example(s) have every label masked{advice}",
                )
            ],
        )

    return tokenized_splits
