"""Partitions: tasks come from tasks.yaml (static), model entries from models.yaml (dynamic).

A new task is a YAML edit picked up at the next load of the code location. A new model entry needs
no reload at all: the model dimension is the dynamic partitions set ``models`` in the Dagster
instance, kept equal to models.yaml by the ``models_config_sensor`` (every tick), by ``ftassets run``
and by ``ftassets sync`` (for ``dagster asset materialize`` of an entry added since the last sync).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from ftassets.config import ProjectConfig

MODEL_PARTITIONS = "models"


@dataclass(frozen=True)
class ProjectPartitions:
    task: dg.StaticPartitionsDefinition
    model: dg.DynamicPartitionsDefinition
    task_model: dg.MultiPartitionsDefinition


def build_partitions(project: ProjectConfig) -> ProjectPartitions:
    task = dg.StaticPartitionsDefinition(list(project.tasks))
    model = dg.DynamicPartitionsDefinition(name=MODEL_PARTITIONS)
    return ProjectPartitions(
        task=task, model=model, task_model=dg.MultiPartitionsDefinition({"task": task, "model": model})
    )


def sync_model_partitions(
    instance: dg.DagsterInstance, models: Iterable[str], prune: bool = False
) -> tuple[list[str], list[str]]:
    """Register the model entries missing from the instance's ``models`` partitions (and, with ``prune``,
    remove those no longer in models.yaml; their materialization history stays). Returns (added, removed)."""
    wanted = list(dict.fromkeys(models))
    registered = set(instance.get_dynamic_partitions(MODEL_PARTITIONS))
    added = [model for model in wanted if model not in registered]
    removed = sorted(registered - set(wanted)) if prune else []
    if added:
        instance.add_dynamic_partitions(MODEL_PARTITIONS, added)
    for model in removed:
        instance.delete_dynamic_partition(MODEL_PARTITIONS, model)
    return added, removed


def cell_key(task: str, model: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"task": task, "model": model})


def cell_of(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["task"], keys["model"]
