"""What every asset module shares: ownership, the partition mappings between the lineage's three
partitions definitions, and the result of a partition where the asset does not apply."""

from __future__ import annotations

import warnings

import dagster as dg

from ftassets.artifacts import ArtifactStore
from ftassets.defs.observe import config_key, not_applicable_metadata
from ftassets.plan import Step

__all__ = ["config_key", "not_applicable_metadata"]

GROUP = "finetuning"
OWNERS = ["team:ml-platform"]
# The lineage maps task x model cells to their task and their model on purpose; the mapping is beta in Dagster 1.13,
# so its warning would only be noise at every load of the code location.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Class `MultiToSingleDimensionPartitionMapping`")
TASK_OF_CELL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="task")
MODEL_OF_CELL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")


def not_applicable(step: Step, checks: tuple[str, ...] = ()) -> dg.MaterializeResult:
    """A partition where the asset has nothing to build: recorded, with the reason, as not applicable."""
    return dg.MaterializeResult(
        metadata=not_applicable_metadata(step),
        data_version=dg.DataVersion(step.fingerprint),
        check_results=[
            dg.AssetCheckResult(check_name=name, passed=True, description=f"not applicable: {step.reason}")
            for name in checks
        ]
        or None,
    )


def upstream_versions(store: ArtifactStore, **assets: tuple[str, ...]) -> dict[str, str]:
    """The fingerprints the upstream artifacts on disk recorded (what this build actually reads)."""
    return {label: store.fingerprint(*location) for label, location in assets.items()}


def check_results(outcomes) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            description=o.description,
            metadata={"details": dg.MetadataValue.json(o.metadata)},
        )
        for o in outcomes
    ]


def blocked(asset: str, partition: str, failed, kept_at) -> dg.Failure:
    """The failure of a build whose blocking check failed: the artifact is kept aside for inspection, never
    promoted over the last good one nor recorded, so the next run tries again (and fails again) until the input
    changes."""
    reasons = "; ".join(f"{o.name}: {o.description}" for o in failed)
    return dg.Failure(
        description=f"{asset} [{partition}] failed its blocking check(s) {reasons}. The previous {asset} stays in "
        f"place; what was built is kept for inspection at {kept_at}",
        metadata={"kept_at": dg.MetadataValue.path(str(kept_at)), "failed_checks": [o.name for o in failed]},
    )
