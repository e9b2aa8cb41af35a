"""The configuration as inputs Dagster sees: one observable source per configured asset, ``config/<asset>``,
partitioned like that asset, whose data version in each partition is the fingerprint the cell plan predicts
from ``configs/*.yaml`` and the task's data files (``ftassets/plan.py``).

Each asset depends on its own source, so a YAML edit marks stale, in Dagster itself, exactly the partitions
whose result it changes (a learning rate: that recipe's adapters, merged models, GGUF exports and
evaluations; a task's sizes: that task's whole lineage), with the cause "has a new dependency data
version" and the new parameters in the source's observation metadata. Observations are recorded by
``ftassets sync``, by ``ftassets run`` before it plans, by the ``configuration_sensor`` every tick, and by
the UI's "Observe sources"."""

import dagster as dg

from ftassets.defs.assets.common import config_key
from ftassets.defs.observe import CONFIGURED_ASSETS, partitions_for, steps_by_partition
from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ProjectResource


def build(partitions: ProjectPartitions) -> list[dg.SourceAsset]:
    return [_source(asset, dimension, partitions) for asset, dimension in CONFIGURED_ASSETS.items()]


def _source(asset: str, dimension: str, partitions: ProjectPartitions) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=config_key(asset),
        partitions_def=partitions_for(partitions, dimension),
        group_name="configuration",
        description=f"The configuration {asset}'s result depends on, hashed per partition (ftassets/plan.py).",
    )
    def observe(project: ProjectResource) -> dg.DataVersionsByPartition:
        steps = steps_by_partition(project.project, asset)
        return dg.DataVersionsByPartition({key: dg.DataVersion(step.fingerprint) for key, step in steps.items()})

    return observe
