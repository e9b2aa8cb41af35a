"""Partitions: tasks come from tasks.yaml (static), model entries from models.yaml (dynamic).

A new task is a YAML edit picked up at the next load of the code location. A new model entry needs
no reload at all: the model dimension is the dynamic partitions set ``models`` in the Dagster
instance, kept equal to models.yaml by the ``models_config_sensor`` (every tick), by ``ftassets run``
and by ``ftassets sync`` (for ``dagster asset materialize`` of an entry added since the last sync).
"""

from __future__ import annotations

import re
import sys
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
    explain_unknown_partition_keys(project)
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


def unknown_key_message(project: ProjectConfig, key: str) -> str:
    """What a partition key Dagster found in none of the selected assets' partitions should have been."""
    parts = key.split("|")
    tasks, models = ", ".join(project.tasks), ", ".join(project.models)
    if len(parts) == 2 and parts[0] in project.tasks and parts[1] in project.models:
        return (
            f"partition {key!r}: a (task, model) cell's key is <model>|<task> (Dagster orders the dimensions by "
            f"name), e.g. --partition '{parts[1]}|{parts[0]}'"
        )
    if len(parts) == 2 and parts[0] in project.models and parts[1] in project.tasks:
        return (
            f"partition {key!r}: model entry {parts[0]!r} is not registered in this Dagster instance yet; run "
            "`ftassets sync` with the same DAGSTER_HOME, then again"
        )
    return (
        f"partition {key!r} is not a partition of the selected asset(s): a dataset or comparison takes a task "
        f"({tasks}), a base_model or forgetting a model entry ({models}), every other asset <model>|<task>, "
        f"e.g. '{next(iter(project.models), 'model')}|{next(iter(project.tasks), 'task')}'"
    )


_UNKNOWN_KEY = re.compile(r"partition key `([^`]*)`")


def explain_unknown_partition_keys(project: ProjectConfig) -> None:
    """``dagster asset materialize --partition`` checks the key before any of our code runs and ends in a stack
    trace; this makes that one exception end in one line saying what the key should be. Everything else goes to
    the hook that was there before."""
    previous = getattr(sys.excepthook, "ftassets_previous", sys.excepthook)

    def hook(kind, error, trace):
        found = _UNKNOWN_KEY.search(str(error))
        if isinstance(error, dg.DagsterInvalidSubsetError) and found:
            print(f"dagster asset materialize: {unknown_key_message(project, found.group(1))}", file=sys.stderr)
            return
        previous(kind, error, trace)

    hook.ftassets_previous = previous
    sys.excepthook = hook
