"""Is a new evaluation of a partition worse than the previous one? (plain Python, no Dagster)

Every primary metric of the shipped task types (accuracy, token F1, execution accuracy, ROUGE-L)
is higher-is-better, so a regression is a drop larger than the threshold, in the metric's own units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RegressionVerdict:
    passed: bool
    description: str
    drops: dict[str, float] = field(default_factory=dict)
    """Variant -> previous minus current score, for the variants that regressed."""


def variant_scores(metadata: Mapping[str, object], primary_metric: str) -> dict[str, float]:
    """The evaluation's ``<variant>_<primary metric>`` numbers (e.g. ``finetuned_accuracy``), by variant."""
    suffix = f"_{primary_metric}"
    return {
        key[: -len(suffix)]: float(value)
        for key, value in metadata.items()
        if key.endswith(suffix) and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def compare(
    previous: dict[str, float] | None, current: dict[str, float], primary_metric: str, threshold: float
) -> RegressionVerdict:
    if previous is None:
        return RegressionVerdict(True, f"first evaluation of this partition: nothing to compare {primary_metric} with")
    common = sorted(set(previous) & set(current))
    if not common:
        return RegressionVerdict(
            True, f"no variant in common with the previous evaluation ({sorted(previous)} then {sorted(current)})"
        )
    drops = {
        variant: previous[variant] - current[variant]
        for variant in common
        if previous[variant] - current[variant] > threshold
    }
    changes = ", ".join(f"{v} {previous[v]:.3f} -> {current[v]:.3f}" for v in common)
    if drops:
        worst = max(drops, key=drops.get)
        return RegressionVerdict(
            False,
            f"REGRESSION: {primary_metric} of {', '.join(sorted(drops))} dropped by more than {threshold} "
            f"(worst: {worst}, -{drops[worst]:.3f}); {changes}. Compare the two runs' recipes and data versions, "
            f"or raise automation.regression_threshold in configs/experiments.yaml if this drop is acceptable.",
            drops,
        )
    return RegressionVerdict(True, f"{primary_metric} within {threshold} of the previous evaluation: {changes}")
