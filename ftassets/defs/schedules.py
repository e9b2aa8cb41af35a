"""Schedules and declarative automation.

- ``weekly_api_baselines`` (Mondays 06:00 UTC, STOPPED by default): re-evaluates the API-model baselines,
  since a provider changes the model behind a name without notice. Off by default because every run is
  billed by the provider; turn it on in the UI (Automation) or with ``dagster schedule start``.
- ``nightly_stale_refresh`` (a sensor acting once a night after 02:00 UTC, STOPPED by default): observes the
  configuration, then asks for an asset
  backfill of every partition of the default experiment that Dagster reports missing or stale, with the
  comparisons, leaderboard and forgetting matrices they feed; the backfill runs them in lineage order. Off by
  default because it trains on the machine it runs on, unattended.
- ``comparison`` and ``leaderboard`` carry an automation condition: refresh when an upstream partition is
  updated (a re-evaluation, a new cell) and nothing upstream is still running. They are cheap tables derived
  from evaluations, so the automation sensor that evaluates the conditions is RUNNING by default.
"""

import datetime

import dagster as dg

from ftassets.config import ProjectConfig, load_project_config
from ftassets.config.schemas import API_SOURCES
from ftassets.defs.partitions import ProjectPartitions, cell_key, sync_model_partitions
from ftassets.defs.resources import ProjectResource

WEEKLY_API_CRON = "0 6 * * 1"
NIGHTLY_HOUR_UTC = 2
NIGHTLY_CHECK_SECONDS = 600


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def refresh_when_upstream_updates() -> dg.AutomationCondition:
    """``eager()`` without its wait for every upstream partition: a comparison shows missing entries as
    ``missing``, so it should not wait for model entries that were never run on the task."""
    condition = dg.AutomationCondition
    return (
        condition.any_deps_updated().since_last_handled() & ~condition.any_deps_in_progress() & ~condition.in_progress()
    ).with_label("refresh_when_upstream_updates")


def api_baselines(project: ProjectConfig) -> list[str]:
    """Model entries that are a provider's model as is: an API base and no recipe."""
    return [
        name
        for name, entry in project.models.items()
        if project.bases[entry.base].source in API_SOURCES and entry.recipe is None
    ]


def build_schedules(
    partitions: ProjectPartitions,
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition], list[dg.JobDefinition]]:
    api_evaluation = dg.define_asset_job(
        "api_baselines_evaluation",
        selection=["evaluation"],
        partitions_def=partitions.task_model,
        description="Re-evaluate one (task, API model) cell; comparison and leaderboard follow by automation.",
    )

    @dg.schedule(
        cron_schedule=WEEKLY_API_CRON,
        job=api_evaluation,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def weekly_api_baselines(context: dg.ScheduleEvaluationContext, project: ProjectResource):
        """Every API baseline's evaluation on every task compared so far, once a week."""
        from ftassets.azure.settings import without_missing_credentials
        from ftassets.defs.sensors import compared_tasks

        config = load_project_config(project.config_dir)
        baselines = api_baselines(config)
        if not baselines:
            return dg.SkipReason(
                "no API-model baseline (an entry with an azure_openai or openai_compatible base and no recipe) "
                "in models.yaml"
            )
        baselines = without_missing_credentials(config, baselines, context.log.warning)
        if not baselines:
            return dg.SkipReason(
                "every API-model baseline lacks its credentials (see the log); "
                "export them and the next week re-evaluates"
            )
        sync_model_partitions(context.instance, config.models)
        tasks = compared_tasks(context.instance, config)
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
        return [
            dg.RunRequest(
                run_key=f"{stamp}:{cell_key(task, model)}",
                partition_key=cell_key(task, model),
                tags={"ftassets/trigger": "weekly-api-baselines"},
            )
            for task in tasks
            for model in baselines
        ]

    @dg.sensor(
        name="nightly_stale_refresh",
        minimum_interval_seconds=NIGHTLY_CHECK_SECONDS,
        asset_selection=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def nightly_stale_refresh(context: dg.SensorEvaluationContext, project: ProjectResource):
        """Once a night, after 02:00 UTC: observe the configuration, then ask for one asset backfill of what Dagster
        reports missing or stale in the default experiment (a sensor, because only sensors can request asset
        backfills, which run the three partitions definitions in lineage order)."""
        from ftassets.azure.settings import without_missing_credentials
        from ftassets.defs.observe import observe_configuration
        from ftassets.defs.sensors import stale_subset

        now = utc_now()
        today = now.strftime("%Y-%m-%d")
        if now.hour < NIGHTLY_HOUR_UTC or context.cursor == today:
            return dg.SkipReason(
                f"next refresh after {NIGHTLY_HOUR_UTC:02d}:00 UTC (last: {context.cursor or 'never'})"
            )
        config = load_project_config(project.config_dir)
        observe_configuration(context.instance, config, context.log.info)
        tasks, models = config.default_selection()
        models = without_missing_credentials(config, models, context.log.info)
        subset, reasons = stale_subset(context.instance, context.repository_def.asset_graph, config, tasks, models)
        if not reasons:
            return dg.SensorResult(cursor=today, skip_reason="nothing in the default experiment is missing or stale")
        context.log.info("rebuilding: " + "; ".join(f"{key}: {why}" for key, why in reasons.items()))
        request = dg.RunRequest.for_asset_graph_subset(
            subset, tags={"ftassets/trigger": f"nightly-stale-refresh:{today}"}
        )
        return dg.SensorResult(run_requests=[request], cursor=today)

    return [weekly_api_baselines], [nightly_stale_refresh], [api_evaluation]


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "automation_condition_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates the assets' automation conditions "
        "(comparison and leaderboard refresh after new evaluations).",
    )
