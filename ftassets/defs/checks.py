"""The regression gate: a new evaluation of a (task, model) partition may not score worse than its previous one."""

import warnings

import dagster as dg

from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ProjectResource
from ftassets.regression import compare, variant_scores

# A partitioned asset check is a preview feature in Dagster 1.13; the check has to run per (task, model) partition.
warnings.filterwarnings(
    "ignore", category=dg.PreviewWarning, message="Specifying a partitions_def on an AssetCheckSpec"
)


def build_checks(partitions: ProjectPartitions) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(asset="evaluation", partitions_def=partitions.task_model, name="no_regression")
    def no_regression(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
        """Each variant's primary metric against the partition's previous evaluation; fails (and logs an alert)
        on a drop above ``automation.regression_threshold`` in configs/experiments.yaml."""
        config = project.project
        task = partitions.task_model.get_partition_key_from_str(context.partition_key).keys_by_dimension["task"]
        primary = config.tasks[task].primary_metric
        threshold = config.experiments.automation.regression_threshold
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("evaluation"), asset_partitions=[context.partition_key]),
            limit=2,
        ).records
        scores = [
            variant_scores({key: value.value for key, value in r.asset_materialization.metadata.items()}, primary)
            for r in records
        ]
        if not scores:
            return dg.AssetCheckResult(passed=True, description="no evaluation materialized yet")
        verdict = compare(scores[1] if len(scores) > 1 else None, scores[0], primary, threshold)
        if not verdict.passed:
            context.log.error(f"evaluation [{context.partition_key}]: {verdict.description}")
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=verdict.description,
            metadata={
                "primary_metric": primary,
                "threshold": threshold,
                "current": dg.MetadataValue.json(scores[0]),
                "previous": dg.MetadataValue.json(scores[1] if len(scores) > 1 else {}),
                "drops": dg.MetadataValue.json(verdict.drops),
            },
        )

    return [no_regression]
