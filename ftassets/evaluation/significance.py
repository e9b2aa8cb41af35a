"""Paired significance tests for comparing two evaluation rows scored on the same examples.

Scores come from the ``correct`` column of an evaluation's predictions frame: 0/1 for
classification, exact-match QA and SQL, a ROUGE-L F in [0, 1] for generation tasks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

BASE_VARIANT = "base"
MCNEMAR_EXACT_BELOW = 25
MCNEMAR_ALPHA = 0.05
CONSTANT_DIFFERENCE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class PairedDifference:
    """``statistic(b) - statistic(a)`` with a paired bootstrap confidence interval."""

    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    significant: bool


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on the discordant pairs.

    ``b01`` counts examples that ``a`` got wrong and ``b`` got right, ``b10`` the reverse.
    ``method`` is ``"exact"`` (two-sided binomial test, ``statistic`` is None) when
    ``b01 + b10 < 25``, otherwise ``"chi2"`` (continuity-corrected chi-square, one degree of freedom).
    """

    b01: int
    b10: int
    p_value: float
    statistic: float | None
    method: str
    significant: bool
    n: int


def paired_bootstrap_ci(
    a: np.ndarray,
    b: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
    method: str = "percentile",
) -> PairedDifference:
    """Bootstrap ``statistic(b) - statistic(a)``, resampling examples (pairs) together.

    ``statistic`` is a location statistic (mean, median, ...) that accepts an ``axis`` keyword, as numpy
    reductions do. ``method`` is passed to ``scipy.stats.bootstrap`` ("percentile", "basic" or "BCa").
    When every resample would give the same value (a constant per-example difference, identical rows
    included, or a single example) the interval is the point difference; a BCa interval that scipy
    cannot compute falls back to the percentile one.
    """
    a, b = _paired_scores(a, b)
    difference = float(statistic(b) - statistic(a))
    if len(a) < 2 or np.ptp(b - a) <= CONSTANT_DIFFERENCE_TOLERANCE:
        return _difference(difference, difference, difference, confidence, len(a))

    def paired_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(y, axis=axis) - statistic(x, axis=axis)

    def interval(bootstrap_method: str) -> tuple[float, float]:
        with warnings.catch_warnings():
            # A degenerate BCa interval comes back as NaN and is replaced by the percentile one below.
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                (a, b),
                paired_statistic,
                paired=True,
                vectorized=True,
                n_resamples=resamples,
                confidence_level=confidence,
                method=bootstrap_method,
                rng=np.random.default_rng(seed),
            )
        return float(result.confidence_interval.low), float(result.confidence_interval.high)

    low, high = interval(method)
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = interval("percentile")
    return _difference(difference, low, high, confidence, len(a))


@dataclass(frozen=True)
class SeedAwareDifference:
    """``mean(tuned) - mean(base)`` over training seeds and test examples, with the percentile interval and the
    two-sided p-value of ``seed_and_example_bootstrap``."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    seeds: int
    n: int
    significant: bool


def seed_and_example_bootstrap(scores: np.ndarray, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the mean of ``scores`` (one row per training seed, one column per test example):
    each replicate draws the seeds with replacement, then the test examples with replacement, the same examples for
    every seed drawn, since every seed was scored on the same test split.

    A two-level bootstrap of seeds crossed with examples, which ``scipy.stats.bootstrap`` (one level) does not
    offer. Each level's draw is a multinomial count per seed or example, so the work is resamples x examples."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"seed scores need one row per seed and one column per example, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("seed scores contain NaN")
    seeds, n = scores.shape
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
    example_counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples)
    per_seed_means = example_counts @ scores.T / n
    return (seed_counts * per_seed_means).sum(axis=1) / seeds


def seed_aware_difference(
    base: np.ndarray, tuned: np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> SeedAwareDifference:
    """The gain of fine-tunes trained with different seeds (``tuned``: one row per seed, one score per example) over
    their base (``base``: one score per example, in the same order), from ``seed_and_example_bootstrap`` of the
    per-example differences: a percentile interval and a two-sided p-value (twice the smaller share of replicates
    on either side of 0, each counted with the bootstrap's +1, at most 1).

    Significant when the interval excludes 0. It covers the randomness of training as well as the choice of test
    examples; with one seed it is the paired bootstrap over examples."""
    base = np.asarray(base, dtype=float).ravel()
    tuned = np.atleast_2d(np.asarray(tuned, dtype=float))
    if tuned.shape[1] != len(base):
        raise ValueError(f"paired scores need the same examples: got {len(base)} base and {tuned.shape[1]} tuned")
    differences = tuned - base
    replicates = seed_and_example_bootstrap(differences, resamples, seed)
    low, high = percentile_interval(replicates, confidence)
    at_most, at_least = ((np.sum(side) + 1) / (resamples + 1) for side in (replicates <= 0, replicates >= 0))
    p_value = float(min(1.0, 2 * min(at_most, at_least)))
    seeds, n = differences.shape
    return SeedAwareDifference(
        float(differences.mean()), low, high, p_value, confidence, seeds, n, bool(low > 0 or high < 0)
    )


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` share of bootstrap ``replicates``."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return float(low), float(high)


def mcnemar_test(a_correct: np.ndarray, b_correct: np.ndarray) -> McNemarResult:
    """McNemar's test of whether ``a`` and ``b`` have the same accuracy on paired binary outcomes."""
    a_correct, b_correct = (_as_binary(values) for values in _paired_scores(a_correct, b_correct))
    b01 = int(np.sum(~a_correct & b_correct))
    b10 = int(np.sum(a_correct & ~b_correct))
    discordant = b01 + b10
    if discordant == 0:
        p_value, statistic, method = 1.0, None, "exact"
    elif discordant < MCNEMAR_EXACT_BELOW:
        p_value, statistic, method = float(stats.binomtest(b01, discordant, 0.5).pvalue), None, "exact"
    else:
        statistic = (abs(b01 - b10) - 1) ** 2 / discordant
        p_value, method = float(stats.chi2.sf(statistic, df=1)), "chi2"
    return McNemarResult(b01, b10, p_value, statistic, method, p_value < MCNEMAR_ALPHA, len(a_correct))


def compare_rows(
    predictions: pd.DataFrame,
    metric_is_binary: bool,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each non-base (model, variant) row against the same model's ``base`` row, aligned by example ``id``.

    Returns one row per compared variant: model, variant, n, delta, ci_low, ci_high, significant, and
    for binary metrics mcnemar_p and mcnemar_significant. A model without a base row has nothing to
    compare against and gives no rows. Raises ValueError when the two rows' example ids differ.
    """
    missing = {"id", "model", "variant", "correct"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions frame lacks columns {sorted(missing)}")
    comparisons = []
    for model, model_rows in predictions.groupby("model", sort=False):
        variants = dict(tuple(model_rows.groupby("variant", sort=False)))
        if BASE_VARIANT not in variants:
            continue
        base_scores = _scores_by_id(variants[BASE_VARIANT], model, BASE_VARIANT)
        for variant, variant_rows in variants.items():
            if variant == BASE_VARIANT:
                continue
            scores = _scores_by_id(variant_rows, model, variant)
            if set(scores.index) != set(base_scores.index):
                only_base = sorted(set(base_scores.index) - set(scores.index), key=str)
                only_variant = sorted(set(scores.index) - set(base_scores.index), key=str)
                raise ValueError(
                    f"{model}/{variant} and {model}/{BASE_VARIANT} were scored on different examples: "
                    f"{len(only_base)} ids only in base (e.g. {only_base[:3]}), "
                    f"{len(only_variant)} only in {variant} (e.g. {only_variant[:3]})"
                )
            a, b = base_scores.to_numpy(), scores.reindex(base_scores.index).to_numpy()
            paired = paired_bootstrap_ci(a, b, confidence=confidence, resamples=resamples, seed=seed)
            comparison = {
                "model": model,
                "variant": variant,
                "n": paired.n,
                "delta": paired.difference,
                "ci_low": paired.ci_low,
                "ci_high": paired.ci_high,
                "significant": paired.significant,
            }
            if metric_is_binary:
                mcnemar = mcnemar_test(a, b)
                comparison |= {"mcnemar_p": mcnemar.p_value, "mcnemar_significant": mcnemar.significant}
            comparisons.append(comparison)
    columns = ["model", "variant", "n", "delta", "ci_low", "ci_high", "significant"]
    if metric_is_binary:
        columns += ["mcnemar_p", "mcnemar_significant"]
    return pd.DataFrame(comparisons, columns=columns)


def latency_summary(latencies) -> dict[str, float]:
    """Mean and 50th/95th/99th percentiles (numpy's linear interpolation) of per-example latencies."""
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        raise ValueError("latency_summary needs at least one latency")
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99)}


def _paired_scores(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same examples: got {len(a)} and {len(b)} scores")
    if len(a) == 0:
        raise ValueError("paired scores are empty")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired scores contain NaN")
    return a, b


def _as_binary(values: np.ndarray) -> np.ndarray:
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("McNemar's test needs binary outcomes (bool or 0/1)")
    return values == 1.0


def _difference(difference: float, low: float, high: float, confidence: float, n: int) -> PairedDifference:
    return PairedDifference(difference, low, high, confidence, n, bool(low > 0 or high < 0))


def _scores_by_id(rows: pd.DataFrame, model: str, variant: str) -> pd.Series:
    duplicated = rows["id"][rows["id"].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"{model}/{variant} has repeated example ids, e.g. {duplicated.iloc[:3].tolist()}")
    return rows.set_index("id")["correct"].astype(float)


def metric_intervals(
    per_example: list[dict],
    metrics: dict[str, float],
    rescore: Callable[[np.ndarray], dict[str, float]],
    confidence: float = 0.95,
    resamples: int = 1000,
    rescore_resamples: int = 200,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric of one evaluation row, resampling its examples.

    A metric that is the mean of a per-example value (accuracy = mean of ``correct``, ROUGE, token F1)
    is resampled directly; any other (macro-F1, corpus BLEU) is recomputed by ``rescore(indices)`` on
    the first ``rescore_resamples`` resamples. Every metric sees the same resampled example sets.
    """
    n = len(per_example)
    if n == 0:
        return {}
    indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    intervals, pending = {}, []
    for name, value in metrics.items():
        values = _per_example_values(per_example, name, value)
        if values is None:
            pending.append(name)
            continue
        intervals[name] = percentile_interval(values[indices].mean(axis=1), confidence)
    if pending:
        rescored = [rescore(sample) for sample in indices[:rescore_resamples]]
        for name in pending:
            values = np.array([scores[name] for scores in rescored], dtype=float)
            intervals[name] = percentile_interval(values, confidence)
    return intervals


def _per_example_values(per_example: list[dict], name: str, value: float) -> np.ndarray | None:
    """The per-example values whose mean is ``value``: the example's own ``name``, else ``correct``."""
    for key in (name, "correct"):
        if all(key in example for example in per_example):
            values = np.array([float(example[key]) for example in per_example])
            if math.isclose(values.mean(), value, rel_tol=1e-9, abs_tol=1e-9):
                return values
    return None
