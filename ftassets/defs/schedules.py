"""Schedules and declarative automation.

- ``weekly_api_baselines`` (Mondays 06:00 UTC, STOPPED by default): re-evaluates the API-model baselines,
  since a provider changes the model behind a name without notice. Off by default because every run is
  billed by the provider; turn it on in the UI (Automation) or with ``dagster schedule start``.
- ``nightly_stale_refresh`` (02:00 UTC, STOPPED by default): does what ``ftassets run`` does for the default
  experiment, so every partition whose fingerprint no longer matches the configuration is rebuilt in lineage
  order, and nothing current is. Off by default because it trains on the machine it runs on, unattended.
- ``comparison`` and ``leaderboard`` carry an automation condition: refresh when an upstream partition is
  updated (a re-evaluation, a new cell) and nothing upstream is still running. They are cheap tables derived
  from evaluations, so the automation sensor that evaluates the conditions is RUNNING by default.

Staleness here is the project's fingerprint rule (``ftassets/lineage.py``): a changed config is invisible to
Dagster's code and data versions until something is rebuilt, which is why the nightly refresh is a job
running the fingerprint-aware runner rather than an ``AutomationCondition.on_cron``.
"""

import dagster as dg

from ftassets.config import ProjectConfig, load_project_config
from ftassets.config.schemas import API_SOURCES
from ftassets.defs.partitions import ProjectPartitions, cell_key, sync_model_partitions
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource
from ftassets.defs.sensors import compared_tasks

WEEKLY_API_CRON = "0 6 * * 1"
NIGHTLY_CRON = "0 2 * * *"


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


@dg.op(
    description="Materialize every stale partition of the default experiment in lineage order, as `ftassets run` does."
)
def refresh_stale_partitions(
    context: dg.OpExecutionContext, project: ProjectResource, artifacts: ArtifactStoreResource
) -> None:
    from ftassets.definitions import build_definitions
    from ftassets.runner import PipelineRunner, format_report

    config = load_project_config(project.config_dir)
    tasks, models = config.default_selection()
    runner = PipelineRunner(
        build_definitions(config.config_dir, artifacts.root),
        config,
        artifacts.store,
        context.instance,
        log=context.log.info,
    )
    report = runner.run(tasks, models)
    context.log.info(format_report(report, config))
    if report.failed:
        raise dg.Failure(
            f"{len(report.failed)} step(s) failed or blocked",
            metadata={"failed": [f"{'+'.join(o.assets)} [{o.partition}]: {o.error}" for o in report.failed]},
        )


def build_schedules(partitions: ProjectPartitions) -> tuple[list[dg.ScheduleDefinition], list[dg.JobDefinition]]:
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

        config = load_project_config(project.config_dir)
        baselines = api_baselines(config)
        if not baselines:
            return dg.SkipReason(
                "no API-model baseline (an entry with an azure_openai or openai_compatible base and no recipe) in models.yaml"
            )
        baselines = without_missing_credentials(config, baselines, context.log.warning)
        if not baselines:
            return dg.SkipReason(
                "every API-model baseline lacks its credentials (see the log); export them and the next week re-evaluates"
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

    @dg.job(
        name="refresh_stale",
        description="Rebuild what the configuration made stale (the default experiment), in lineage order.",
    )
    def refresh_stale_job():
        refresh_stale_partitions()

    nightly_stale_refresh = dg.ScheduleDefinition(
        name="nightly_stale_refresh",
        cron_schedule=NIGHTLY_CRON,
        job=refresh_stale_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Every night: rebuild the partitions whose fingerprint no longer matches the configuration.",
    )
    return [weekly_api_baselines, nightly_stale_refresh], [api_evaluation, refresh_stale_job]


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "automation_condition_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Evaluates the assets' automation conditions (comparison and leaderboard refresh after new evaluations).",
    )
