"""``forgetting`` (per model entry): what fine-tuning on one task cost on the others."""

import dagster as dg
import pandas as pd

from ftassets import plan
from ftassets.defs.assets.common import GROUP, MODEL_OF_CELL, OWNERS, config_key, not_applicable_metadata
from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource, TrainerResource


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.model,
        deps=[
            config_key("forgetting"),
            dg.AssetDep("dataset", partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep("merged_model", partition_mapping=MODEL_OF_CELL),
            dg.AssetDep("adapter", partition_mapping=MODEL_OF_CELL),
        ],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=plan.CODE_VERSIONS["forgetting"],
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
        on every task's test split (its first ``evaluation.forgetting_examples``), as a trained-on x evaluated-on
        matrix."""
        from ftassets.evaluation.runs import evaluate_forgetting, forgetting_version

        config, store = project.project, artifacts.store
        model = context.partition_key
        step = plan.forgetting_step(config, model)
        if not step.applies:
            return dg.Output(
                pd.DataFrame(), metadata=not_applicable_metadata(step), data_version=dg.DataVersion(step.fingerprint)
            )
        table = evaluate_forgetting(config, store, model, trainer.resolved_device(), context.log.info)
        if table.empty:
            matrix = "no fine-tuned task yet"
        else:
            matrix = table.pivot(index="trained_on", columns="evaluated_on", values="delta").to_markdown(
                floatfmt="+.3f"
            )
        return dg.Output(
            table,
            metadata={"delta_matrix": dg.MetadataValue.md(matrix), "rows": len(table)},
            data_version=dg.DataVersion(forgetting_version(config, store, model)),
        )

    return forgetting
