"""Recording the configuration in the Dagster instance, so that Dagster's own stale status follows YAML edits.

``observe_configuration`` computes the cell plan of every partition and records, without a run:
- an observation of ``config/<asset>`` for each partition whose predicted fingerprint changed since the last
  one (with the parameters as metadata, so the UI shows what the configuration now says);
- a "not applicable" materialization, with the reason, for each partition where the asset does not apply
  (an API entry has no adapter), so those read as settled rather than as missing work.
It is cheap when nothing changed (one query per asset), so the sensor calls it every tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import dagster as dg

from ftassets import plan
from ftassets.config import ProjectConfig
from ftassets.defs.partitions import ProjectPartitions, cell_key, sync_model_partitions

DATA_VERSION_TAG = "dagster/data_version"
CONFIGURED_ASSETS = {
    "dataset": "task",
    "base_model": "model",
    **{asset: "task_model" for asset in plan.CELL_ASSETS},
    "comparison": "task",
    "forgetting": "model",
}
"""Every asset whose result depends on configuration, with the partitions definition it and its source use."""


def config_key(asset: str) -> dg.AssetKey:
    """The observable source that carries the configuration ``asset``'s result depends on."""
    return dg.AssetKey(["config", asset])


def not_applicable_metadata(step: plan.Step) -> dict[str, Any]:
    return {"applicable": False, "reason": step.reason}


def partitions_for(partitions: ProjectPartitions, dimension: str) -> dg.PartitionsDefinition:
    return getattr(partitions, dimension)


def steps_by_partition(project: ProjectConfig, asset: str) -> dict[str, plan.Step]:
    """The cell plan's step for ``asset`` in every partition of the configuration, by partition key."""
    if asset == "dataset":
        return {task: plan.dataset_step(project, task) for task in project.tasks}
    if asset == "base_model":
        return {model: plan.base_step(project, model) for model in project.models}
    if asset == "comparison":
        return {task: plan.comparison_step(project, task) for task in project.tasks}
    if asset == "forgetting":
        return {model: plan.forgetting_step(project, model) for model in project.models}
    return {
        str(cell_key(task, model)): plan.cell_plan(project, task, model)[asset]
        for task in project.tasks
        for model in project.models
    }


def observe_configuration(
    instance: dg.DagsterInstance, project: ProjectConfig, log: Callable[[str], None] | None = None
) -> dict[str, list[str]]:
    """Record the configuration's current fingerprints (and the partitions that do not apply) in ``instance``.
    Returns, per asset, the partitions whose configuration changed since the last observation."""
    sync_model_partitions(instance, project.models, prune=True)
    changed: dict[str, list[str]] = {}
    for asset in CONFIGURED_ASSETS:
        steps = steps_by_partition(project, asset)
        observed = latest_data_versions(instance.fetch_observations, config_key(asset), steps)
        for key, step in steps.items():
            if observed.get(key) != step.fingerprint:
                instance.report_runless_asset_event(
                    dg.AssetObservation(
                        asset_key=config_key(asset),
                        partition=key,
                        tags={DATA_VERSION_TAG: step.fingerprint},
                        metadata={"applies": step.applies, "parameters": dg.MetadataValue.json(step.params or {})},
                    )
                )
                if key in observed:
                    changed.setdefault(asset, []).append(key)
        settled = {key: step for key, step in steps.items() if not step.applies}
        recorded = latest_data_versions(instance.fetch_materializations, dg.AssetKey(asset), settled)
        for key, step in settled.items():
            if recorded.get(key) != step.fingerprint:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset_key=asset,
                        partition=key,
                        tags={DATA_VERSION_TAG: step.fingerprint},
                        metadata=not_applicable_metadata(step),
                    )
                )
    if log and changed:
        log("configuration changed: " + "; ".join(f"{asset} {sorted(keys)}" for asset, keys in changed.items()))
    return changed


def latest_data_versions(fetch: Callable, key: dg.AssetKey, partitions: Iterable[str]) -> dict[str, str | None]:
    """The data version of the latest event (``fetch``: observations or materializations) of each partition."""
    wanted = set(partitions)
    found: dict[str, str | None] = {}
    cursor = None
    while wanted and len(found) < len(wanted):
        result = fetch(dg.AssetRecordsFilter(asset_key=key, asset_partitions=sorted(wanted)), limit=1000, cursor=cursor)
        for record in result.records:
            event = record.asset_materialization or record.asset_observation
            found.setdefault(record.partition_key, (event.tags or {}).get(DATA_VERSION_TAG))
        if not result.has_more:
            break
        cursor = result.cursor
    return found
