"""What ``notebooks/analysis.ipynb`` shows beyond the comparison report's figures: quality against latency, each
class's error rate, which forgetting matrices exist, and the lineage of what the notebook loaded (the data version
Dagster recorded for each asset partition beside its artifact's manifest).

Plain Python: the Dagster instance and definitions are reached only through the ``PipelineRunner`` passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ftassets import plan
from ftassets.artifacts import read_manifest
from ftassets.evaluation.report import quality_vs_cost


def quality_vs_latency(table: pd.DataFrame, metric: str) -> plt.Figure:
    """``quality_vs_cost``'s figure with each row's median latency of a generation batch on the x axis."""
    figure = quality_vs_cost(table.assign(cost_per_1k_usd=table["latency_p50_s"]), metric)
    figure.axes[0].set(xlabel="median latency per batch (s)", title="quality against latency")
    return figure


def class_error_rates(matrices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """From ``confusion_matrices``: per model (rows) and reference class (columns), the share of that class's test
    examples the model answered with another class or an unparsed answer."""
    rates = {}
    for model, matrix in matrices.items():
        examples = matrix.sum(axis=1)
        correct = pd.Series(np.diag(matrix), index=matrix.index)
        rates[model] = (1 - correct / examples)[examples > 0]
    return pd.DataFrame(rates).T.rename_axis(index="model", columns="reference")


def materialized_forgetting(runner, models: Iterable[str]) -> list[str]:
    """The model entries among ``models`` whose forgetting matrix was materialized: Dagster records a version and
    the plan says the matrix applies (an entry without a fine-tune has only a "not applicable" record)."""
    return [
        model
        for model in models
        if plan.forgetting_step(runner.project, model).applies and runner.recorded_version("forgetting", model)
    ]


def lineage(runner, loaded: Iterable[tuple[str, Any]]) -> pd.DataFrame:
    """One row per loaded ``(asset, partition)`` (a task, a model entry, or a cell's ``cell_key``): the data version
    of its latest materialization in the Dagster instance, whether it is current (else why it needs building), and
    its artifact manifest's fingerprint, date and commit (empty for a table without an artifact folder)."""
    rows = []
    for asset, partition in loaded:
        cell = getattr(partition, "keys_by_dimension", None)
        parts = (cell["model"], cell["task"]) if cell else (str(partition),)
        manifest = read_manifest(runner.store.path(asset, *parts)) or {}
        rows.append(
            {
                "asset": asset,
                "partition": str(partition),
                "data_version": runner.recorded_version(asset, partition),
                "current": runner.needs(asset, partition) or "yes",
                "artifact_fingerprint": manifest.get("fingerprint"),
                "created_at": manifest.get("created_at"),
                "commit": manifest.get("source"),
            }
        )
    return pd.DataFrame(rows)
