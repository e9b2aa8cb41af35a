"""The gates on ``evaluation``: a new evaluation of a (task, model) partition may not score worse than its previous
one, and on a triage task a fine-tune may not under-triage more emergencies than its base. ``publish_to_model_store``
refuses a cell whose latest result of either check failed."""

import warnings
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecordStatus,
)

from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ProjectResource
from ftassets.evaluation.safety import (
    UNDER_TRIAGE_METRIC,
    UnderTriageVerdict,
    under_triage_counts,
    under_triage_verdict,
)
from ftassets.regression import compare, variant_scores
from ftassets.tasks import task_type_for

PUBLISH_GATES = ("no_regression", "no_under_triage")
"""The checks on ``evaluation`` whose failure stops a cell's artifacts from being published."""

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
        return gate_result(
            context,
            verdict.passed,
            verdict.description,
            {
                "primary_metric": primary,
                "threshold": threshold,
                "current": dg.MetadataValue.json(scores[0]),
                "previous": dg.MetadataValue.json(scores[1] if len(scores) > 1 else {}),
                "drops": dg.MetadataValue.json(verdict.drops),
            },
        )

    @dg.asset_check(asset="evaluation", partitions_def=partitions.task_model, name="no_under_triage")
    def no_under_triage(context: dg.AssetCheckExecutionContext, project: ProjectResource) -> dg.AssetCheckResult:
        """On a triage task (one scoring ``under_triaged_emergencies``), each fine-tuned variant against its base:
        fails (and logs an alert) when it under-triages more than ``automation.under_triage_allowance`` more
        emergencies, or when the evaluation's table cannot be read. Cells of other tasks pass."""
        config = project.project
        task = config.tasks[
            partitions.task_model.get_partition_key_from_str(context.partition_key).keys_by_dimension["task"]
        ]
        if UNDER_TRIAGE_METRIC not in task_type_for(task).metric_names:
            return dg.AssetCheckResult(passed=True, description=f"not a triage task: {task.name} is a {task.type} task")
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("evaluation"), asset_partitions=[context.partition_key]),
            limit=1,
        ).records
        if not records:
            return dg.AssetCheckResult(passed=True, description="no evaluation materialized yet")
        from ftassets.evaluation.runs import TABLE_FILE

        # The table beside the predictions the materialization recorded: the per-variant counts are not metadata.
        predictions = records[0].asset_materialization.metadata.get("predictions")
        table = Path(predictions.value).parent / TABLE_FILE if predictions is not None else None
        if table is None or not table.exists():
            verdict = UnderTriageVerdict(
                False,
                f"cannot read this evaluation's table ({table}); materialize evaluation [{context.partition_key}]",
            )
            counts = {}
        else:
            counts = under_triage_counts(pd.read_parquet(table))
            verdict = under_triage_verdict(counts, config.experiments.automation.under_triage_allowance)
        return gate_result(
            context,
            verdict.passed,
            verdict.description,
            {
                "allowance": config.experiments.automation.under_triage_allowance,
                "under_triaged_emergencies": dg.MetadataValue.json(counts),
                "excess": dg.MetadataValue.json(verdict.excess),
            },
        )

    return [no_regression, no_under_triage]


def gate_result(
    context: dg.AssetCheckExecutionContext, passed: bool, description: str, metadata: dict
) -> dg.AssetCheckResult:
    """An ERROR-severity result; a failure is also logged at ERROR level, the alert a run's log shows."""
    if not passed:
        context.log.error(f"evaluation [{context.partition_key}]: {description}")
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=metadata
    )


def failed_publish_gates(instance: dg.DagsterInstance, partition_key: str) -> dict[str, str]:
    """Each of ``PUBLISH_GATES`` whose latest completed result on ``evaluation[partition_key]`` failed, with its
    description. A check that has never run on the partition does not stop publishing."""
    failed = {}
    for name in PUBLISH_GATES:
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("evaluation"), name),
            limit=1,
            status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
            partition_filter=PartitionKeyFilter(key=partition_key),
        )
        if records and records[0].status == AssetCheckExecutionRecordStatus.FAILED:
            evaluation = records[0].event.asset_check_evaluation if records[0].event else None
            failed[name] = (evaluation.description if evaluation else None) or "failed"
    return failed
