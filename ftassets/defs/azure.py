"""Azure operations that are not assets: tearing down the fine-tuned deployments and serverless endpoints ftassets
created.

A deployed fine-tune bills hosting per hour until deleted; Azure deletes one only after 15 days
without calls (Developer tier: 24 h after creation); a Foundry fine-tune's serverless endpoint bills
until deleted. Run ``azure_teardown`` when the comparison is done.
"""

import dagster as dg

from ftassets.defs.resources import ProjectResource


class TeardownConfig(dg.Config):
    deployments: list[str] = []
    """Deployment or serverless endpoint names to delete; empty: every one tagged ``managed-by: ftassets`` (on the Azure
    OpenAI account and on the Azure ML workspace, each whose variables are set)."""


@dg.op(tags={"kind": "azure"})
def teardown_azure_deployments(
    context: dg.OpExecutionContext, config: TeardownConfig, project: ProjectResource
) -> dg.Output[list]:
    """Delete ftassets' fine-tuned deployments and serverless endpoints through the control plane, with the hosting
    each cost."""
    from ftassets.azure.lifecycle import teardown_deployments

    deleted = teardown_deployments(project.project, config.deployments or None, context.log.info)
    return dg.Output(deleted, metadata={"deleted": dg.MetadataValue.json(deleted), "count": len(deleted)})


@dg.job(
    description="Delete the Azure OpenAI deployments and Azure ML serverless endpoints of fine-tunes that ftassets "
    "created "
    "(all, or the ones named)."
)
def azure_teardown():
    teardown_azure_deployments()
