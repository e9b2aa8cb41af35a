"""The comparison's summary of a group of seed repeats: one model entry trained several times with different seeds
(``repeats`` in models.yaml, ``ftassets/config/repeats.py``), each fine-tune evaluated on the same test split.

After the group's own rows comes one row, variant ``finetuned-<N>-seeds``: the primary metric's mean over the N
seeds (also ``<metric>_seed_mean``) with their standard deviation (``<metric>_seed_std``) and ``seeds``; its interval,
the significance of its gain over the base (``delta_ci_low``, ``delta_ci_high``, ``significant``) and ``seed_aware_p``
from a bootstrap that resamples seeds, then test examples (``seed_aware_difference``). The other numbers are the
seeds' means, without intervals. Each GGUF variant the seeds were evaluated as gets such a row too
(``gguf-q8_0-<N>-seeds``): what the exported files of the N trainings score, against the same base.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ftassets.config.schemas import EvaluationSettings
from ftassets.evaluation.significance import (
    BASE_VARIANT,
    percentile_interval,
    seed_and_example_bootstrap,
    seed_aware_difference,
)

FINETUNED_VARIANT = "finetuned"
GGUF_PREFIX = "gguf-"
SEEDS_SUFFIX = "-{seeds}-seeds"
SEEDS_VARIANT = FINETUNED_VARIANT + SEEDS_SUFFIX
"""The variant of a group's summary row: letters, digits and dashes, so also part of a valid MLflow metric name."""


def is_seed_summary(variant: str, of: str = FINETUNED_VARIANT) -> bool:
    """Whether ``variant`` names a group's summary row of the ``of`` variant (``SEEDS_VARIANT`` by default)."""
    return re.fullmatch(re.escape(of) + r"-\d+-seeds", variant) is not None


def seed_columns(primary: str) -> list[str]:
    return [f"{primary}_seed_mean", f"{primary}_seed_std", "seeds"]


def with_seed_summaries(
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    groups: dict[str, tuple[str, ...]],
    primary: str,
    settings: EvaluationSettings,
) -> pd.DataFrame:
    """The comparison ``table`` with ``repeat_of`` naming each row's group and, after the rows of each group with at
    least two seeds evaluated, its summary row; ``table`` itself when no entry has repeats."""
    if not groups:
        return table
    group_of = {member: group for group, members in groups.items() for member in members}
    table = table.copy()
    table.insert(table.columns.get_loc("status") + 1, "repeat_of", table.model.map(group_of))
    summaries, positions = [], []
    for group, members in groups.items():
        rows = table[table.model.isin(members)]
        gguf = [v for v in dict.fromkeys(rows.variant) if str(v).startswith(GGUF_PREFIX)]
        for offset, variant in enumerate([FINETUNED_VARIANT, *gguf]):
            summary = _summary_row(table, predictions, group, members, primary, settings, variant)
            if summary is not None:
                summaries.append(summary)
                positions.append(np.flatnonzero(table.model.isin(members)).max() + 0.5 + offset / 100)
    if not summaries:
        return table
    order = pd.Series(list(range(len(table))) + positions)
    combined = pd.concat([table, pd.DataFrame(summaries)], ignore_index=True)
    combined = combined.iloc[order.sort_values(kind="stable").index].reset_index(drop=True)
    return combined.reindex(columns=_ordered_columns(table, primary))


def _summary_row(
    table: pd.DataFrame,
    predictions: pd.DataFrame,
    group: str,
    members: tuple[str, ...],
    primary: str,
    settings: EvaluationSettings,
    variant: str = FINETUNED_VARIANT,
) -> dict | None:
    """The group's row for ``variant``, from that variant's rows of its seeds evaluated so far; None below two."""
    tuned = table[table.model.isin(members) & (table.variant == variant) & (table.status == "ok")]
    if len(tuned) < 2:
        return None
    seeds = list(tuned.model)
    base_row = table[(table.model == seeds[0]) & (table.variant == BASE_VARIANT)].iloc[0]
    scores, base_scores = _example_scores(predictions, group, seeds, variant)
    values = tuned[primary].astype(float)
    tested = seed_aware_difference(
        base_scores, scores, confidence=settings.confidence, resamples=settings.bootstrap_resamples
    )
    low = high = np.nan
    if np.allclose(scores.mean(axis=1), values):
        replicates = seed_and_example_bootstrap(scores, settings.bootstrap_resamples)
        low, high = percentile_interval(replicates, settings.confidence)
    means = tuned.select_dtypes("number").mean()
    means = means[[c for c in means.index if not c.endswith(("_ci_low", "_ci_high")) and c != "mcnemar_p"]]
    return {
        **means.to_dict(),
        "model": group,
        "variant": variant + SEEDS_SUFFIX.format(seeds=len(seeds)),
        "status": "ok",
        "repeat_of": group,
        "device": ", ".join(dict.fromkeys(tuned.device.astype(str))),
        f"{primary}_ci_low": low,
        f"{primary}_ci_high": high,
        f"delta_{primary}": values.mean() - float(base_row[primary]),
        f"{primary}_seed_mean": values.mean(),
        f"{primary}_seed_std": values.std(ddof=1),
        "seeds": len(seeds),
        "delta_ci_low": tested.ci_low,
        "delta_ci_high": tested.ci_high,
        "significant": tested.significant,
        "seed_aware_p": tested.p_value,
    }


def _example_scores(
    predictions: pd.DataFrame, group: str, seeds: list[str], variant: str = FINETUNED_VARIANT
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example scores (``correct``) of the seeds' ``variant`` rows (one row per seed) and of their base, aligned by
    example id; a ValueError when they were not all scored on the same examples."""
    rows = predictions[predictions.model.isin(seeds)]
    tuned = rows[rows.variant == variant].pivot(index="model", columns="id", values="correct")
    base = rows[(rows.model == seeds[0]) & (rows.variant == BASE_VARIANT)].set_index("id")["correct"]
    aligned = tuned.reindex(index=seeds, columns=base.index)
    if set(tuned.columns) != set(base.index) or aligned.isna().to_numpy().any():
        raise ValueError(
            f"the seed repeats of {group!r} ({', '.join(seeds)}) and their base were not all scored on the same test "
            "examples; evaluate them again on the current test split (`ftassets run`)"
        )
    return aligned.to_numpy(dtype=float), base.to_numpy(dtype=float)


def _ordered_columns(table: pd.DataFrame, primary: str) -> list[str]:
    """The table's columns, the seed statistics after the primary metric's gain and ``seed_aware_p`` after the other
    significance columns."""
    columns = list(table.columns)
    delta = columns.index(f"delta_{primary}") + 1
    columns[delta:delta] = seed_columns(primary)
    after = max(columns.index(c) for c in ("significant", "mcnemar_p", "delta_ci_high") if c in columns) + 1
    columns[after:after] = ["seed_aware_p"]
    return columns
