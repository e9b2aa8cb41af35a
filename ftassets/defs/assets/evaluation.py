"""``evaluation`` (per task x model): base and fine-tuned variants scored on the task's frozen test split."""

import dagster as dg
import pandas as pd

from ftassets import plan
from ftassets.defs.assets.common import GROUP, MODEL_OF_CELL, OWNERS, TASK_OF_CELL, config_key
from ftassets.defs.partitions import ProjectPartitions, cell_of
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource, TrainerResource


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task_model,
        deps=[
            config_key("evaluation"),
            "merged_model",
            "gguf_export",
            "adapter",
            dg.AssetDep("dataset", partition_mapping=TASK_OF_CELL),
            dg.AssetDep("base_model", partition_mapping=MODEL_OF_CELL),
        ],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=plan.CODE_VERSIONS["evaluation"],
        io_manager_key="table_io_manager",
        pool="gpu",
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        project: ProjectResource,
        artifacts: ArtifactStoreResource,
        trainer: TrainerResource,
    ) -> dg.Output[pd.DataFrame]:
        """Base and fine-tuned variants of one model entry scored on the task's frozen test split (GGUF
        quantizations too, where the cell has them)."""
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

    return evaluation
