"""What needs building, as Dagster itself sees it: a partition is missing, stale (with Dagster's causes), or
current; an artifact whose files no longer match its manifest counts as damaged and needs building too."""

from __future__ import annotations

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext

# Dagster 1.13 has no public entry point to an asset partition's stale status outside the UI and GraphQL; the
# resolver below is what both of them use (dagster-webserver's staleStatus field).
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime


class Staleness:
    """Dagster's stale status of asset partitions, read afresh for each question (a run in between changes it)."""

    def __init__(self, instance: dg.DagsterInstance, asset_graph) -> None:
        self.instance, self.asset_graph = instance, asset_graph

    def _resolver(self) -> CachingStaleStatusResolver:
        context = TemporalContext(effective_dt=get_current_datetime(), last_event_id=None)
        view = AssetGraphView(temporal_context=context, instance=self.instance, asset_graph=self.asset_graph)
        return CachingStaleStatusResolver(instance=self.instance, asset_graph=self.asset_graph, loading_context=view)

    def why(self, asset: str, partition: str | dg.MultiPartitionKey | None) -> str | None:
        """``"missing"``, ``"stale: <Dagster's causes>"``, or None when Dagster reports the partition fresh."""
        resolver, key = self._resolver(), dg.AssetKey(asset)
        status = resolver.get_status(key, partition)
        if status == StaleStatus.MISSING:
            return "missing"
        if status == StaleStatus.STALE:
            causes = resolver.get_stale_causes(key, partition)
            return "stale: " + "; ".join(sorted({f"{c.reason} ({c.dependency.asset_key.to_user_string()})"
                                                  if c.dependency else c.reason for c in causes}))  # fmt: skip
        return None
