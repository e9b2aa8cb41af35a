"""``comparison`` (per task): every model entry of the task, base against fine-tuned, with a report."""

import dagster as dg
import pandas as pd

from ftassets import plan
from ftassets.artifacts import write_manifest
from ftassets.defs.assets.common import GROUP, OWNERS, TASK_OF_CELL, config_key
from ftassets.defs.metadata import table_metadata
from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ArtifactStoreResource, MlflowResource, ProjectResource
from ftassets.defs.schedules import refresh_when_upstream_updates


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions.task,
        deps=[config_key("comparison"), dg.AssetDep("evaluation", partition_mapping=TASK_OF_CELL)],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=plan.CODE_VERSIONS["comparison"],
        io_manager_key="table_io_manager",
        automation_condition=refresh_when_upstream_updates(),
    )
    def comparison(
        context: dg.AssetExecutionContext,
        project: ProjectResource,
        artifacts: ArtifactStoreResource,
        mlflow: MlflowResource,
    ) -> dg.Output[pd.DataFrame]:
        """Every model entry of the task, base against fine-tuned: metrics with bootstrap intervals, the gain on
        the primary metric and its significance, latency and cost, and for an entry with seed repeats the mean and
        standard deviation over its seeds with a seed-aware significance test; plus a markdown and a self-contained
        HTML report with figures and each fine-tuned model's worst examples, also logged to MLflow as one run.
        An entry not evaluated on the task yet is listed as ``missing``."""
        from ftassets.evaluation.evaluate import comparison_table, markdown_table, summary_columns
        from ftassets.evaluation.report import render
        from ftassets.evaluation.runs import TABLE_FILE, comparison_version, load_evaluations

        config, store = project.project, artifacts.store
        task = config.tasks[context.partition_key]
        evaluations = load_evaluations(config, store, task.name)
        predictions = pd.concat([e.predictions() for e in evaluations.values()] or [pd.DataFrame()], ignore_index=True)
        table = comparison_table(
            task,
            list(config.models),
            {m: e.table for m, e in evaluations.items()},
            predictions,
            config.repeat_groups,
            config.experiments.evaluation,
        )
        version = comparison_version({model: e.fingerprint for model, e in evaluations.items()})
        missing = sorted(set(table.loc[table.status == "missing", "model"]))
        report = render(task, table, predictions)
        directory = store.path("comparison", task.name)
        with store.writing(directory) as staging:
            report.write(staging)
            table.to_parquet(staging / TABLE_FILE, index=False)
            write_manifest(staging, asset="comparison", partition=task.name, fingerprint=version)
        metrics = comparison_metrics(table, task.primary_metric)
        tracked = mlflow.log_report(context, f"comparison/{task.name}", directory, metrics)
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

    return comparison


def comparison_metrics(table: pd.DataFrame, primary: str) -> dict[str, float]:
    """The primary metric of every evaluated row, as MLflow metrics named ``<primary>/<model>/<variant>``."""
    evaluated = table[table.status == "ok"]
    return {
        f"{primary}/{m}/{v}": float(score)
        for m, v, score in zip(evaluated.model, evaluated.variant, evaluated[primary])
    }
