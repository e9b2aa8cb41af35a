"""Partitions come from the configuration: tasks.yaml names the tasks, models.yaml the model entries.

Adding a task or a model entry is a YAML edit; the next load of the code location (a reload in the
UI, or the next CLI call) has its partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ftassets.config import ProjectConfig


@dataclass(frozen=True)
class ProjectPartitions:
    task: dg.StaticPartitionsDefinition
    model: dg.StaticPartitionsDefinition
    task_model: dg.MultiPartitionsDefinition


def build_partitions(project: ProjectConfig) -> ProjectPartitions:
    task = dg.StaticPartitionsDefinition(list(project.tasks))
    model = dg.StaticPartitionsDefinition(list(project.models))
    return ProjectPartitions(task=task, model=model, task_model=dg.MultiPartitionsDefinition({"task": task, "model": model}))


def cell_key(task: str, model: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"task": task, "model": model})


def cell_of(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["task"], keys["model"]
