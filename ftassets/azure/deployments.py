"""Deploying and tearing down fine-tuned models through the control plane (azure-mgmt-cognitiveservices).

A deployed fine-tune bills hosting per hour whether or not it is called (about $1.70/h on Standard and
Global Standard), until it is deleted. Azure itself deletes a fine-tuned deployment after 15 days without
calls, and a Developer-tier deployment (no hosting fee) 24 hours after it was created; neither is a reason
to leave one running. Every deployment ftassets creates carries the tag ``managed-by: ftassets`` (and
its model entry and task), so ``teardown`` finds and deletes them, all or by name, from any machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ftassets.azure.clients import AccountRef, call_options

MANAGED_TAG = "managed-by"
MANAGED_VALUE = "ftassets"
IDLE_DELETION_DAYS = 15
DEVELOPER_TIER_LIFETIME_HOURS = 24


@dataclass(frozen=True)
class DeploymentRecord:
    name: str
    model: str
    sku: str
    capacity: int
    hosting_per_hour_usd: float
    created_at: float
    account: str
    resource_group: str
    expires: str
    kind: str = "azure_openai"
    """azure_openai: a deployment of the account; serverless: an Azure ML serverless endpoint (``foundry.py``)."""
    endpoint: str | None = None
    """A serverless endpoint's inference URL (its key is fetched when needed, never stored)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deployment_name(model_entry: str, task: str, fingerprint: str) -> str:
    """ARM allows letters, digits, ``-``, ``_`` and ``.``, at most 64 characters."""
    return f"{model_entry}-{task}-{fingerprint[:8]}"[-64:].lstrip("-_.")


def expiry_note(sku: str) -> str:
    if sku == "DeveloperTier":
        return f"Developer tier: no hosting fee; Azure deletes it {DEVELOPER_TIER_LIFETIME_HOURS} h after creation"
    return (
        f"bills hosting per hour until deleted (Azure deletes it after {IDLE_DELETION_DAYS} days without calls); "
        "run the azure_teardown job when done"
    )


def deploy(
    mgmt: Any,
    account: AccountRef,
    name: str,
    model: str,
    *,
    sku: str,
    capacity: int,
    hosting_per_hour_usd: float,
    tags: dict[str, str],
    log: Callable[[str], None],
) -> DeploymentRecord:
    """Create (or update) deployment ``name`` serving ``model`` and wait until it is provisioned."""
    from azure.mgmt.cognitiveservices.models import Deployment, DeploymentModel, DeploymentProperties, Sku

    body = Deployment(
        sku=Sku(name=sku, capacity=capacity),
        tags={MANAGED_TAG: MANAGED_VALUE, **tags},
        properties=DeploymentProperties(model=DeploymentModel(format="OpenAI", name=model, version="1")),
    )
    log(f"deploying {model} as {name!r} ({sku}, capacity {capacity}; hosting ${hosting_per_hour_usd:.2f}/h)")
    poller = mgmt.deployments.begin_create_or_update(
        account.resource_group, account.account, name, body, polling_interval=1, **call_options(account)
    )
    deployed = poller.result()
    state = deployed.properties.provisioning_state
    if state != "Succeeded":
        raise RuntimeError(f"deployment {name!r} of {model} ended provisioning as {state!r}")
    log(f"deployment {name!r} is ready; {expiry_note(sku)}")
    return DeploymentRecord(
        name=name,
        model=model,
        sku=sku,
        capacity=capacity,
        hosting_per_hour_usd=hosting_per_hour_usd,
        created_at=time.time(),
        account=account.account,
        resource_group=account.resource_group,
        expires=expiry_note(sku),
    )


def managed_deployments(mgmt: Any, account: AccountRef) -> list[Any]:
    """The account's deployments that ftassets created (by tag)."""
    return [
        d
        for d in mgmt.deployments.list(account.resource_group, account.account, **call_options(account))
        if (d.tags or {}).get(MANAGED_TAG) == MANAGED_VALUE
    ]


def teardown(
    mgmt: Any,
    account: AccountRef,
    names: list[str] | None,
    log: Callable[[str], None],
    hosting_per_hour: Callable[[str], float | None] = lambda model: None,
) -> list[dict[str, Any]]:
    """Delete the ftassets deployments named (all of them when ``names`` is None); what each cost while it ran
    is estimated from its creation time and the hosting price of its model."""
    deleted = []
    wanted = None if names is None else set(names)
    for deployment in managed_deployments(mgmt, account):
        if wanted is not None and deployment.name not in wanted:
            continue
        created = getattr(getattr(deployment, "system_data", None), "created_at", None)
        hours = (time.time() - created.timestamp()) / 3600 if created else None
        model = deployment.properties.model.name
        price = hosting_per_hour(model) if deployment.sku.name != "DeveloperTier" else 0.0
        mgmt.deployments.begin_delete(
            account.resource_group, account.account, deployment.name, polling_interval=1, **call_options(account)
        ).result()
        cost = hours * price if hours is not None and price is not None else None
        log(
            f"deleted deployment {deployment.name!r} ({model}, {deployment.sku.name})"
            + (f": up {hours:.2f} h, about ${cost:.2f} of hosting" if cost is not None else "")
        )
        deleted.append(
            {"name": deployment.name, "model": model, "sku": deployment.sku.name, "hours": hours, "hosting_usd": cost}
        )
    if wanted:
        for name in sorted(wanted - {d["name"] for d in deleted}):
            log(f"deployment {name!r} not found among the ftassets deployments of {account.account}: nothing to delete")
    return deleted
