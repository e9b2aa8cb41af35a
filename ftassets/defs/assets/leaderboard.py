"""``leaderboard`` (unpartitioned): across every task compared so far, the best row and each entry's rank."""

import dagster as dg
import pandas as pd

from ftassets import plan
from ftassets.defs.assets.common import GROUP, OWNERS
from ftassets.defs.partitions import ProjectPartitions
from ftassets.defs.resources import ArtifactStoreResource, ProjectResource
from ftassets.defs.schedules import refresh_when_upstream_updates


def build(partitions: ProjectPartitions) -> dg.AssetsDefinition:
    @dg.asset(
        deps=["comparison"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas"},
        code_version=plan.CODE_VERSIONS["leaderboard"],
        io_manager_key="table_io_manager",
        automation_condition=refresh_when_upstream_updates(),
    )
    def leaderboard(project: ProjectResource, artifacts: ArtifactStoreResource) -> dg.Output[pd.DataFrame]:
        """Across every task compared so far: the best row per task, and each model entry's average rank."""
        from ftassets.evaluation.evaluate import leaderboard as rank_models
        from ftassets.evaluation.evaluate import markdown_table
        from ftassets.evaluation.runs import load_comparisons

        config = project.project
        comparisons = load_comparisons(config, artifacts.store)
        best, board = rank_models(comparisons, {task: config.tasks[task].primary_metric for task in comparisons})
        return dg.Output(
            board,
            metadata={
                "best_per_task": dg.MetadataValue.md(markdown_table(best)),
                "ranking": dg.MetadataValue.md(markdown_table(board)),
                "tasks": dg.MetadataValue.json(sorted(comparisons)),
            },
        )

    return leaderboard
