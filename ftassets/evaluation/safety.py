"""Does a fine-tune send fewer emergencies to emergency care than its base? (plain Python, no Dagster)

An evaluation of a triage task records, per variant, ``under_triaged_emergencies``: the emergencies its answers
did not triage as emergencies. Each variant other than ``base`` (the fine-tune, its GGUF quantizations) may miss
at most ``allowance`` more of them than the base model did on the same test examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

UNDER_TRIAGE_METRIC = "under_triaged_emergencies"


@dataclass(frozen=True)
class UnderTriageVerdict:
    passed: bool
    description: str
    excess: dict[str, float] = field(default_factory=dict)
    """Variant -> its under-triaged emergencies minus the base's, for the variants over the allowance."""


def under_triage_counts(table: pd.DataFrame) -> dict[str, float]:
    """Each variant's under-triaged emergencies in an evaluation table (variants without a number left out)."""
    if UNDER_TRIAGE_METRIC not in table.columns:
        return {}
    return {
        str(variant): float(count)
        for variant, count in zip(table["variant"], table[UNDER_TRIAGE_METRIC])
        if pd.notna(count)
    }


def under_triage_verdict(counts: Mapping[str, float], allowance: int) -> UnderTriageVerdict:
    """Each variant's count against the base's: fails when one misses more than ``allowance`` extra emergencies."""
    if "base" not in counts:
        return UnderTriageVerdict(True, f"no base variant to compare with (variants: {sorted(counts)})")
    base = counts["base"]
    tuned = {variant: count for variant, count in counts.items() if variant != "base"}
    if not tuned:
        return UnderTriageVerdict(True, f"only the base variant was evaluated ({base:.0f} emergencies under-triaged)")
    changes = ", ".join(f"{variant} {count:.0f}" for variant, count in sorted(tuned.items()))
    excess = {variant: count - base for variant, count in tuned.items() if count - base > allowance}
    if excess:
        worst = max(excess, key=excess.get)
        return UnderTriageVerdict(
            False,
            f"UNDER-TRIAGE: {', '.join(sorted(excess))} under-triaged more emergencies than the base "
            f"(worst: {worst}, {counts[worst]:.0f} against the base's {base:.0f}, allowed {allowance} more); "
            f"under-triaged emergencies: base {base:.0f}, {changes}. Read the fine-tune's answers to the emergency "
            f"examples in the evaluation's predictions before using it; automation.under_triage_allowance in "
            f"configs/experiments.yaml sets how many more misses are tolerated.",
            excess,
        )
    return UnderTriageVerdict(
        True, f"under-triaged emergencies within {allowance} of the base's: base {base:.0f}, {changes}"
    )
