import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ftassets.evaluation.significance import (
    compare_rows,
    latency_summary,
    mcnemar_test,
    metric_intervals,
    paired_bootstrap_ci,
    seed_and_example_bootstrap,
    seed_aware_difference,
)


def outcomes(correct: int, total: int, seed: int) -> np.ndarray:
    """Exactly ``correct`` of ``total`` examples right, in a seeded random order."""
    values = np.zeros(total)
    values[:correct] = 1.0
    return np.random.default_rng(seed).permutation(values)


def discordant_table(b01: int, b10: int, both_right: int = 5, both_wrong: int = 5) -> tuple[np.ndarray, np.ndarray]:
    a = [False] * b01 + [True] * b10 + [True] * both_right + [False] * both_wrong
    b = [True] * b01 + [False] * b10 + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(b)


def predictions_frame(rows: dict[tuple[str, str], np.ndarray], ids: list[str]) -> pd.DataFrame:
    frames = [
        pd.DataFrame({"id": ids, "model": model, "variant": variant, "correct": scores})
        for (model, variant), scores in rows.items()
    ]
    return pd.concat(frames, ignore_index=True)


def test_identical_rows_differ_by_zero_and_are_not_significant():
    scores = outcomes(120, 200, seed=1)
    result = paired_bootstrap_ci(scores, scores.copy())
    assert result.difference == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert not result.significant
    assert result.n == 200 and result.confidence == 0.95


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_clearly_better_row_is_significant_and_interval_holds_true_difference(method):
    base, finetuned = outcomes(60, 200, seed=1), outcomes(180, 200, seed=2)
    result = paired_bootstrap_ci(base, finetuned, method=method)
    assert result.difference == pytest.approx(0.6)
    assert 0 < result.ci_low < 0.6 < result.ci_high
    assert result.significant


def test_small_noisy_difference_is_not_significant():
    base, finetuned = outcomes(10, 20, seed=3), outcomes(11, 20, seed=4)
    result = paired_bootstrap_ci(base, finetuned)
    assert result.difference == pytest.approx(0.05)
    assert result.ci_low < 0 < result.ci_high
    assert not result.significant


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    base, finetuned = rng.random(50), rng.random(50)
    assert paired_bootstrap_ci(base, finetuned, seed=7) == paired_bootstrap_ci(base, finetuned, seed=7)


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_constant_difference_gives_the_point_interval(method):
    base = np.random.default_rng(6).random(40)
    result = paired_bootstrap_ci(base, base + 0.25, method=method)
    assert result.ci_low == result.ci_high == result.difference == pytest.approx(0.25)
    assert result.significant


def test_bootstrap_takes_another_location_statistic():
    base, finetuned = outcomes(60, 200, seed=1), outcomes(180, 200, seed=2)
    result = paired_bootstrap_ci(base, finetuned, statistic=np.median)
    assert result.difference == 1.0


def test_unpaired_scores_raise():
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap_ci(np.zeros(10), np.zeros(11))


def test_mcnemar_exact_matches_binomial_test_and_hand_computation():
    result = mcnemar_test(*discordant_table(b01=7, b10=2))
    # Two-sided: 2 * P(X >= 7), X ~ Binomial(9, 1/2) = 2 * (36 + 9 + 1) / 512.
    assert (result.b01, result.b10, result.n) == (7, 2, 19)
    assert result.method == "exact" and result.statistic is None
    assert result.p_value == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue)
    assert result.p_value == pytest.approx(92 / 512)
    assert not result.significant


def test_mcnemar_chi_square_with_continuity_correction_on_a_large_table():
    result = mcnemar_test(*discordant_table(b01=40, b10=20, both_right=100, both_wrong=40))
    expected_statistic = (abs(40 - 20) - 1) ** 2 / (40 + 20)
    assert result.method == "chi2"
    assert result.statistic == pytest.approx(expected_statistic)
    # The chi-square survival function with one degree of freedom is erfc(sqrt(x / 2)).
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(expected_statistic / 2)))
    assert result.significant


@pytest.mark.parametrize(("b01", "b10", "method"), [(16, 8, "exact"), (17, 8, "chi2")])
def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs(b01, b10, method):
    assert mcnemar_test(*discordant_table(b01, b10)).method == method


def test_mcnemar_without_discordant_pairs_is_not_significant():
    result = mcnemar_test(*discordant_table(b01=0, b10=0))
    assert result.p_value == 1.0 and not result.significant


def test_mcnemar_rejects_non_binary_scores():
    with pytest.raises(ValueError, match="binary"):
        mcnemar_test(np.array([0.0, 0.5]), np.array([1.0, 1.0]))


def test_compare_rows_pairs_each_variant_with_its_own_base():
    ids = [f"ex{i}" for i in range(200)]
    same = outcomes(100, 200, seed=8)
    frame = predictions_frame(
        {
            ("alpha", "base"): outcomes(60, 200, seed=1),
            ("alpha", "finetuned"): outcomes(180, 200, seed=2),
            ("beta", "base"): same,
            ("beta", "finetuned"): same,
        },
        ids,
    )
    shuffled = frame.sample(frac=1.0, random_state=0)
    table = compare_rows(shuffled, metric_is_binary=True).set_index(["model", "variant"])

    assert sorted(table.index) == [("alpha", "finetuned"), ("beta", "finetuned")]
    alpha, beta = table.loc[("alpha", "finetuned")], table.loc[("beta", "finetuned")]
    assert alpha["delta"] == pytest.approx(0.6) and alpha["ci_low"] > 0 and alpha["significant"]
    assert alpha["mcnemar_p"] < 0.05 and alpha["mcnemar_significant"]
    assert beta["delta"] == 0.0 and not beta["significant"]
    assert beta["mcnemar_p"] == 1.0 and not beta["mcnemar_significant"]
    assert (table["n"] == 200).all()


def test_compare_rows_on_a_generation_metric_has_no_mcnemar_columns():
    rng = np.random.default_rng(9)
    ids = [f"ex{i}" for i in range(50)]
    base = rng.uniform(0.2, 0.5, 50)
    frame = predictions_frame({("alpha", "base"): base, ("alpha", "finetuned"): base + rng.uniform(0.1, 0.3, 50)}, ids)
    table = compare_rows(frame, metric_is_binary=False)
    assert list(table.columns) == ["model", "variant", "n", "delta", "ci_low", "ci_high", "significant"]
    assert table.loc[0, "significant"] and 0.1 < table.loc[0, "ci_low"] < table.loc[0, "ci_high"] < 0.3


def test_compare_rows_rejects_rows_scored_on_different_examples():
    base = pd.DataFrame({"id": ["a", "b", "c"], "model": "alpha", "variant": "base", "correct": [1.0, 0.0, 1.0]})
    finetuned = base.assign(variant="finetuned", id=["a", "b", "d"])
    with pytest.raises(ValueError, match="different examples"):
        compare_rows(pd.concat([base, finetuned]), metric_is_binary=True)


def test_latency_summary_uses_numpy_percentiles():
    latencies = np.arange(1, 101) / 100
    summary = latency_summary(latencies)
    assert summary == pytest.approx(
        {
            "mean": 0.505,
            "p50": np.percentile(latencies, 50),
            "p95": np.percentile(latencies, 95),
            "p99": np.percentile(latencies, 99),
        }
    )
    assert summary["p50"] < summary["p95"] < summary["p99"]


def test_metric_intervals_resample_means_directly_and_rescore_the_rest():
    rng = np.random.default_rng(1)
    correct = (rng.random(200) < 0.7).astype(float)
    per_example = [{"correct": c} for c in correct]
    calls = []

    def rescore(sample):
        calls.append(len(sample))
        return {"accuracy": float(correct[sample].mean()), "macro_f1": float(correct[sample].mean()) / 2}

    intervals = metric_intervals(
        per_example,
        {"accuracy": correct.mean(), "macro_f1": correct.mean() / 2},
        rescore,
        resamples=500,
        rescore_resamples=50,
    )
    low, high = intervals["accuracy"]
    assert low < correct.mean() < high and 0.05 < high - low < 0.2
    assert len(calls) == 50, "only the metric that is not a per-example mean is rescored"
    assert intervals["macro_f1"][0] < correct.mean() / 2 < intervals["macro_f1"][1]


def test_an_export_that_answers_as_the_merged_model_takes_its_intervals_and_one_that_differs_is_rescored(
    monkeypatch,
):
    """A GGUF row whose answers are the merged model's texts gets the merged row's intervals, which recomputing them
    gives too (same examples resampled from the same seed); one different answer makes it resample its own."""
    from ftassets.backends.base import Generation, ModelBackend
    from ftassets.config import load_project_config
    from ftassets.config.schemas import EvaluationSettings
    from ftassets.evaluation import evaluate

    class Answers(ModelBackend):
        name = "fixed"

        def __init__(self, texts):
            self.texts = texts

        def generate(self, conversations, max_new_tokens):
            return [Generation(text, 0.01, 5, 1) for text in self.texts]

    task = load_project_config().tasks["classification"]
    labels = ["positive", "negative", "neutral"] * 20
    rows = [{"id": f"t{i}", "prompt": f"text {i}", "answer": label, "label": label} for i, label in enumerate(labels)]
    texts = [label if i % 4 else "negative" for i, label in enumerate(labels)]
    settings = EvaluationSettings(bootstrap_resamples=200)
    merged = evaluate.evaluate_variant(Answers(texts), task, rows, "m", "finetuned", settings)
    recomputed = evaluate.evaluate_variant(Answers(texts), task, rows, "m", "gguf-q8_0", settings)
    computed = []
    monkeypatch.setattr(
        evaluate, "metric_intervals", lambda *args, **kwargs: computed.append(1) or metric_intervals(*args, **kwargs)
    )
    same = evaluate.evaluate_variant(Answers(texts), task, rows, "m", "gguf-q8_0", settings, same_rows_as=merged)
    bounds = [column for column in merged.row if column.endswith(("_ci_low", "_ci_high"))]
    assert "macro_f1_ci_low" in bounds and not computed
    assert all(same.row[column] == recomputed.row[column] == merged.row[column] for column in bounds)

    changed = [*texts[:-1], "positive" if texts[-1] != "positive" else "negative"]
    other = evaluate.evaluate_variant(Answers(changed), task, rows, "m", "gguf-q4_k_m", settings, same_rows_as=merged)
    assert computed == [1] and other.row["accuracy"] != merged.row["accuracy"]


def test_significance_flags_the_fine_tuned_row_against_its_base():
    from ftassets.evaluation.evaluate import significance

    ids = list(range(120))
    base = pd.DataFrame({"id": ids, "model": "m", "variant": "base", "correct": [0.0] * 120})
    tuned = pd.DataFrame({"id": ids, "model": "m", "variant": "finetuned", "correct": [1.0] * 80 + [0.0] * 40})
    table = significance(pd.concat([base, tuned]))
    row = table.set_index("variant").loc["finetuned"]
    assert bool(row["significant"]) and row["delta_ci_low"] > 0.5 and row["mcnemar_p"] < 1e-6


def test_seed_aware_test_with_identical_seeds_is_about_the_paired_bootstrap():
    """Three seeds that answered alike leave only the examples to resample: the interval is the paired bootstrap's,
    up to resampling noise."""
    base, finetuned = outcomes(60, 200, seed=1), outcomes(150, 200, seed=2)
    paired = paired_bootstrap_ci(base, finetuned)
    seeded = seed_aware_difference(base, np.tile(finetuned, (3, 1)))
    assert seeded.difference == pytest.approx(paired.difference) and seeded.seeds == 3 and seeded.n == 200
    assert seeded.ci_low == pytest.approx(paired.ci_low, abs=0.02)
    assert seeded.ci_high == pytest.approx(paired.ci_high, abs=0.02)
    assert seeded.significant and seeded.p_value < 0.01


def test_a_large_spread_between_seeds_widens_the_interval_and_can_undo_significance():
    base = outcomes(100, 200, seed=1)
    alike = np.stack([outcomes(120, 200, seed=s) for s in (2, 3, 4)])
    spread = np.stack([outcomes(correct, 200, seed=s) for correct, s in ((80, 2), (120, 3), (160, 4))])
    narrow, wide = seed_aware_difference(base, alike), seed_aware_difference(base, spread)
    assert narrow.difference == pytest.approx(wide.difference) == pytest.approx(0.1)
    assert wide.ci_high - wide.ci_low > 2 * (narrow.ci_high - narrow.ci_low)
    assert narrow.significant and not wide.significant
    assert wide.p_value > 0.05 > narrow.p_value


def test_the_seed_aware_test_is_deterministic_for_a_seed_and_calls_identical_rows_equal():
    rng = np.random.default_rng(5)
    base, tuned = rng.random(50), rng.random((3, 50))
    assert seed_aware_difference(base, tuned, seed=7) == seed_aware_difference(base, tuned, seed=7)
    assert seed_aware_difference(base, tuned, seed=7) != seed_aware_difference(base, tuned, seed=8)
    same = seed_aware_difference(base, np.tile(base, (3, 1)))
    assert (same.difference, same.ci_low, same.ci_high, same.p_value, same.significant) == (0.0, 0.0, 0.0, 1.0, False)


def test_seed_and_example_bootstrap_resamples_seeds_then_examples():
    """Seeds scoring 0 and 1 on every example: only the seed draw moves the mean, in steps of 1/3."""
    replicates = seed_and_example_bootstrap(np.array([[0.0] * 10, [1.0] * 10, [1.0] * 10]), resamples=500)
    assert set(np.round(replicates * 3).astype(int)) <= {0, 1, 2, 3} and len(set(replicates.round(9))) > 1
    with pytest.raises(ValueError, match="one row per seed"):
        seed_and_example_bootstrap(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        seed_and_example_bootstrap(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="same examples"):
        seed_aware_difference(np.zeros(4), np.zeros((2, 5)))
