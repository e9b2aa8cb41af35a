"""Sensors: new data files and new model entries start retrains, as asset backfills run by the daemon.

Both are RUNNING by default: they act only on something a user did on purpose (dropped a file,
added a model entry), which is a request to retrain. A backfill (not plain runs) because the
lineage spans three partitions definitions and must run in order: dataset, then each (task, model)
cell, then comparison. ``ftassets/data/incoming.py`` holds the file handling.
"""

import json

import dagster as dg

# AssetGraphSubset is how a sensor asks for an asset backfill (RunRequest.for_asset_graph_subset); Dagster 1.13
# exports no public constructor for it or its AssetKeyPartitionKey items.
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey

from ftassets.config import ProjectConfig, load_project_config
from ftassets.data.incoming import accepted_version, ignored_files, incoming_root, ingest
from ftassets.defs.partitions import ProjectPartitions, cell_key, sync_model_partitions
from ftassets.defs.resources import ProjectResource

SENSOR_INTERVAL_SECONDS = 30


def lineage_subset(
    asset_graph, partitions: ProjectPartitions, root: str, tasks: list[str], models: list[str]
) -> AssetGraphSubset:
    """``root`` and everything downstream of it, restricted to ``tasks`` x ``models``.

    Per-model assets below the root (the cross-task ``forgetting`` matrix, which needs every task) are left to
    ``ftassets run`` and the nightly refresh; unpartitioned ones (``leaderboard``) are included."""
    wanted = set()
    for key in dg.AssetSelection.assets(root).downstream().resolve(asset_graph):
        partitions_def = asset_graph.get(key).partitions_def
        if partitions_def is None:
            wanted.add(AssetKeyPartitionKey(key, None))
        elif partitions_def == partitions.task_model:
            wanted |= {AssetKeyPartitionKey(key, cell_key(t, m)) for t in tasks for m in models}
        elif partitions_def == partitions.task:
            wanted |= {AssetKeyPartitionKey(key, t) for t in tasks}
        elif partitions_def == partitions.model and key == dg.AssetKey(root):
            wanted |= {AssetKeyPartitionKey(key, m) for m in models}
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph)


def stale_subset(
    instance: dg.DagsterInstance, asset_graph, project: ProjectConfig, tasks: list[str], models: list[str]
) -> tuple[AssetGraphSubset, dict[str, str]]:
    """Every partition of ``tasks`` x ``models`` that Dagster reports missing or stale (where its asset applies),
    the rest of its cell after it, and the comparisons, leaderboard and forgetting matrices they feed: one asset
    backfill's worth, with the reason for each partition found."""
    from ftassets import plan
    from ftassets.defs.staleness import Staleness

    staleness, wanted, reasons = Staleness(instance, asset_graph), set(), {}

    def check(asset: str, partition) -> bool:
        if (why := staleness.why(asset, partition)) is None:
            return False
        reasons[f"{asset}[{partition}]"] = why
        wanted.add(AssetKeyPartitionKey(dg.AssetKey(asset), partition))
        return True

    touched_tasks = {task for task in tasks if check("dataset", task)}
    touched_models = {model for model in models if check("base_model", model)}
    for task in tasks:
        for model in models:
            steps, key, downstream = plan.cell_plan(project, task, model), cell_key(task, model), False
            for asset in plan.CELL_ASSETS:
                if steps[asset].applies and (downstream or check(asset, key)):
                    wanted.add(AssetKeyPartitionKey(dg.AssetKey(asset), key))
                    downstream = True
                    touched_tasks.add(task)
                    touched_models.add(model)
    wanted |= {AssetKeyPartitionKey(dg.AssetKey("comparison"), task) for task in touched_tasks}
    if touched_tasks:
        wanted.add(AssetKeyPartitionKey(dg.AssetKey("leaderboard"), None))
    wanted |= {
        AssetKeyPartitionKey(dg.AssetKey("forgetting"), model)
        for model in touched_models
        if plan.forgetting_step(project, model).applies
    }
    return AssetGraphSubset.from_asset_partition_set(wanted, asset_graph), reasons


def evaluated_models(instance: dg.DagsterInstance, project: ProjectConfig, task: str, log) -> list[str]:
    """The model entries evaluated on ``task`` so far (whose cells new data makes stale), else the default experiment's
    less the API entries whose credentials are not set (as ``ftassets run`` does)."""
    from ftassets.azure.settings import without_missing_credentials

    materialized = {str(key) for key in instance.get_materialized_partitions(dg.AssetKey("evaluation"))}
    evaluated = [m for m in project.models if str(cell_key(task, m)) in materialized]
    return evaluated or without_missing_credentials(project, project.default_selection()[1], log)


def compared_tasks(instance: dg.DagsterInstance, project: ProjectConfig) -> list[str]:
    """The tasks with a comparison so far (where a new model entry should join), else the default experiment's."""
    materialized = instance.get_materialized_partitions(dg.AssetKey("comparison"))
    return [task for task in project.tasks if task in materialized] or project.default_selection()[0]


def build_sensors(partitions: ProjectPartitions) -> list[dg.SensorDefinition]:
    @dg.sensor(
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=dg.AssetSelection.assets("dataset").downstream(),
    )
    def incoming_data_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
        """JSONL files dropped into ``incoming/<task>/``: a file the task's dataset would build with joins it (train
        split) and starts a backfill of that task's lineage for the model entries evaluated on it so far; any other is
        moved to ``rejected/`` with a reason file. Files the drop folder never reads (another extension, a file
        directly in ``incoming/``) are logged once each.

        The cursor holds the accepted files already requested (by name: a withdrawn file dropped again is new) and the
        ignored files already reported (while they are there): the sensor's own state, kept by Dagster with its ticks,
        so the drop folder holds only the user's files."""
        config = load_project_config(project.config_dir)
        for outcome in ingest(config):
            if outcome.accepted:
                context.log.info(
                    f"{outcome.task}: accepted {outcome.source} ({outcome.rows} rows) as {outcome.path.name}"
                )
            else:
                context.log.warning(f"{outcome.reason}; moved to {outcome.path}")
        state = json.loads(context.cursor) if context.cursor else {}
        ignored, reported = ignored_files(config), set(state.get("reported", []))
        for path in sorted(set(ignored) - reported):
            context.log.warning(f"{incoming_root(config) / path}: ignored: {ignored[path]}")
        requested = set(state.get("requested", []))
        new = {
            task: [f for f in accepted_version(config, task) if not {f["file"], f["sha256"]} & requested]
            for task in config.tasks
        }
        new = {task: files for task, files in new.items() if files}
        cursor = {
            "requested": sorted(requested | {f["file"] for fs in new.values() for f in fs}),
            "reported": sorted(ignored),
        }
        if not new:
            return dg.SensorResult(
                skip_reason="no new accepted file in the incoming folders", cursor=json.dumps(cursor)
            )
        sync_model_partitions(context.instance, config.models)
        tasks = sorted(new)
        asset_graph = context.repository_def.asset_graph
        subset = AssetGraphSubset.create_empty_subset()
        for task in tasks:
            subset |= lineage_subset(
                asset_graph,
                partitions,
                "dataset",
                [task],
                evaluated_models(context.instance, config, task, context.log.info),
            )
        context.log.info(
            f"new data for {tasks}: {sorted(f['file'] for fs in new.values() for f in fs)}; requesting their lineage"
        )
        return dg.SensorResult(
            run_requests=[dg.RunRequest.for_asset_graph_subset(subset, tags={"ftassets/trigger": "incoming-data"})],
            cursor=json.dumps(cursor),
        )

    @dg.sensor(
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=dg.AssetSelection.assets("base_model").downstream(),
    )
    def models_config_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
        """Keeps the ``models`` partitions equal to models.yaml (read every tick) and backfills the lineage of each
        entry added since the previous tick: its base_model, its cells and the comparison of every task compared so
        far. The first tick only records the entries present (a baseline), so turning the sensor on trains nothing."""
        config = load_project_config(project.config_dir)
        added, removed = sync_model_partitions(context.instance, config.models, prune=True)
        if added or removed:
            context.log.info(f"models partitions: added {added}, removed {removed}")
        models = list(config.models)
        if context.cursor is None:
            return dg.SensorResult(
                cursor=json.dumps(models), skip_reason=f"baseline: {len(models)} model entries registered"
            )
        new = [model for model in models if model not in set(json.loads(context.cursor))]
        if not new:
            return dg.SensorResult(cursor=json.dumps(models), skip_reason="no new entry in models.yaml")
        tasks = compared_tasks(context.instance, config)
        context.log.info(f"new model entries {new}: requesting their lineage on {tasks}")
        subset = lineage_subset(context.repository_def.asset_graph, partitions, "base_model", tasks, new)
        return dg.SensorResult(
            run_requests=[dg.RunRequest.for_asset_graph_subset(subset, tags={"ftassets/trigger": "models-config"})],
            cursor=json.dumps(models),
        )

    @dg.sensor(minimum_interval_seconds=SENSOR_INTERVAL_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING)
    def configuration_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
        """Records configs/*.yaml (and the tasks' data) in the instance every tick: the ``config/*`` sources'
        data versions, so Dagster marks stale exactly what an edit changed, and the partitions where an asset
        does not apply. It launches nothing: the UI, ``ftassets run`` or the nightly refresh rebuilds."""
        from ftassets.defs.observe import observe_configuration

        changed = observe_configuration(context.instance, load_project_config(project.config_dir), context.log.info)
        if not changed:
            return dg.SkipReason("configuration unchanged")
        return dg.SkipReason("configuration changed: " + ", ".join(f"{a} ({len(k)})" for a, k in changed.items()))

    return [incoming_data_sensor, models_config_sensor, configuration_sensor]
