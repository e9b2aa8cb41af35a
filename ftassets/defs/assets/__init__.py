"""The asset graph, one module per asset, in lineage order:

configuration sources -> dataset (task) -> base_model (model) -> tokenized_splits -> adapter -> merged_model
-> gguf_export -> evaluation (task x model) -> comparison (task) -> leaderboard; forgetting (model).

Each asset loads its inputs, calls one plain-Python function, writes its artifact atomically with a
manifest, and returns metadata. Which asset applies to a partition, with which parameters, is the cell
plan's answer (``ftassets/plan.py``); a partition where an asset does not apply is recorded as not
applicable, with the reason.
"""

import dagster as dg

from ftassets.defs.assets import (
    adapter,
    base_model,
    comparison,
    configuration,
    dataset,
    evaluation,
    forgetting,
    gguf_export,
    leaderboard,
    merged_model,
    tokenized_splits,
)
from ftassets.defs.partitions import ProjectPartitions

LINEAGE = (
    dataset,
    base_model,
    tokenized_splits,
    adapter,
    merged_model,
    gguf_export,
    evaluation,
    comparison,
    leaderboard,
    forgetting,
)


def build_assets(partitions: ProjectPartitions) -> list[dg.AssetsDefinition | dg.SourceAsset]:
    return [*configuration.build(partitions), *(module.build(partitions) for module in LINEAGE)]
