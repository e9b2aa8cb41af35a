"""Seed repeats (``repeats: N`` on a model entry): the configuration's expansion into N entries with their own seeds,
and the comparison's row for the group (mean and standard deviation over the seeds, the seed-aware test), on
hand-made evaluations."""

import re

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, edit_yaml

from ftassets import plan
from ftassets.config import ConfigError, load_project_config
from ftassets.config.schemas import EvaluationSettings
from ftassets.evaluation.evaluate import comparison_table
from ftassets.evaluation.report import render
from ftassets.evaluation.significance import seed_aware_difference
from ftassets.summary import format_summary

GROUP = ("lora", "lora.seed1", "lora.seed2")
SETTINGS = EvaluationSettings(bootstrap_resamples=500)


def with_repeats(config_dir, entry: str = "tiny-lora", repeats: int = 3):
    edit_yaml(config_dir / "models.yaml", lambda d: d["models"][entry].update(repeats=repeats))
    return load_project_config(config_dir)


def test_an_entry_with_repeats_is_that_many_entries_each_trained_with_its_own_seed(config_dir):
    from ftassets.defs.assets.adapter import AdapterConfig, resolve_recipe

    project = with_repeats(config_dir)
    group = ["tiny-lora", "tiny-lora.seed1", "tiny-lora.seed2"]
    seed = project.recipes["lora"].seed
    assert project.repeat_groups == {"tiny-lora": tuple(group)}
    assert list(project.models)[:4] == [*group, "tiny-qlora"]
    assert [project.recipe_of(model).seed for model in group] == [seed, seed + 1, seed + 2]
    assert [project.repeat_of(model) for model in [*group, "tiny-qlora"]] == ["tiny-lora"] * 3 + [None]
    assert project.models["tiny-lora.seed2"].base == "tiny" and project.models["tiny-lora.seed2"].repeats == 1
    assert resolve_recipe(project, "tiny-lora.seed2", AdapterConfig()) == project.recipe_of("tiny-lora.seed2")
    assert resolve_recipe(project, "tiny-lora.seed2", AdapterConfig(seed=10)).seed == 12
    selected = project.default_selection()[1]
    assert selected[selected.index("tiny-lora") :][:3] == group, "an experiment naming the entry runs its repeats"
    assert project.with_repeats(["tiny-qlora", "tiny-lora"]) == ["tiny-qlora", *group]
    assert len({plan.cell_plan(project, "classification", m)["adapter"].fingerprint for m in group}) == 3
    assert plan.forgetting_step(project, "tiny-lora").applies
    assert "seed repeat of 'tiny-lora'" in plan.forgetting_step(project, "tiny-lora.seed1").reason


@pytest.mark.parametrize("entry, why", [("gpt-5", "has no recipe"), ("gpt-4.1-mini-sft", "fine-tunes in the cloud")])
def test_repeats_need_a_recipe_that_trains_locally(config_dir, entry, why):
    with pytest.raises(
        ConfigError,
        match=rf"models\.yaml: models\.{re.escape(entry)}\.repeats: 3 repeats need a recipe that trains locally "
        rf"\(lora, .*{why}.*remove `repeats`",
    ):
        with_repeats(config_dir, entry)


def test_a_repeat_named_like_another_entry_is_an_error(config_dir):
    edit_yaml(config_dir / "models.yaml", lambda d: d["models"].update({"tiny-lora.seed2": {"base": "tiny"}}))
    with pytest.raises(
        ConfigError,
        match=r"models\.yaml: models\.tiny-lora\.repeats: repeat 2 of 'tiny-lora' is named 'tiny-lora\.seed2', and "
        r"models\.yaml has an entry of that name already; rename that entry or lower repeats",
    ):
        with_repeats(config_dir)


@pytest.fixture(scope="module")
def task():
    return load_project_config(REPO / "configs").tasks["classification"]


def cell(
    model: str, base_correct: np.ndarray, tuned_correct: np.ndarray, gguf_correct: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A cell's evaluation table and predictions, each row's accuracy the mean of its per-example scores; a
    ``gguf-q8_0`` row too when ``gguf_correct`` is given."""
    rows, predictions = [], []
    variants = [("base", base_correct), ("finetuned", tuned_correct)]
    for variant, correct in variants + ([("gguf-q8_0", gguf_correct)] if gguf_correct is not None else []):
        accuracy = float(np.mean(correct))
        rows.append(
            {"model": model, "variant": variant, "status": "ok", "accuracy": accuracy,
             "accuracy_ci_low": accuracy - 0.1, "accuracy_ci_high": accuracy + 0.1, "macro_f1": accuracy,
             "n": len(correct), "latency_p50_s": 0.1, "cost_per_1k_usd": 0.01, "device": "cpu",
             "significant": None if variant == "base" else True}
        )  # fmt: skip
        predictions.append(pd.DataFrame({"id": range(len(correct)), "model": model, "variant": variant,
                                         "correct": correct}))  # fmt: skip
    return pd.DataFrame(rows), pd.concat(predictions, ignore_index=True)


def outcomes(correct: int, total: int, seed: int) -> np.ndarray:
    values = np.zeros(total)
    values[:correct] = 1.0
    return np.random.default_rng(seed).permutation(values)


@pytest.fixture(scope="module")
def evaluated():
    """Three seeds of entry ``lora`` at 30, 32 and 34 of 40 right (base: 10), and an entry ``other`` alone."""
    base = outcomes(10, 40, seed=0)
    tuned = np.stack([outcomes(right, 40, seed=i) for i, right in enumerate((30, 32, 34), start=1)])
    cells = {model: cell(model, base, scores) for model, scores in zip(GROUP, tuned)}
    cells["other"] = cell("other", base, outcomes(20, 40, seed=9))
    return base, tuned, cells


def compare(task, cells: dict) -> pd.DataFrame:
    predictions = pd.concat([p for _, p in cells.values()] or [pd.DataFrame()], ignore_index=True)
    tables = {model: table for model, (table, _) in cells.items()}
    return comparison_table(task, [*GROUP, "other"], tables, predictions, {"lora": GROUP}, SETTINGS)


def test_a_repeat_group_has_a_row_with_the_mean_and_spread_over_seeds_and_the_seed_aware_test(task, evaluated):
    base, tuned, cells = evaluated
    table = compare(task, cells)
    assert list(zip(table.model, table.variant))[4:8] == [
        ("lora.seed2", "base"), ("lora.seed2", "finetuned"), ("lora", "finetuned-3-seeds"), ("other", "base")
    ]  # fmt: skip
    summary = table[table.variant == "finetuned-3-seeds"].iloc[0]
    assert summary.model == summary.repeat_of == "lora" and summary.seeds == 3 and summary.status == "ok"
    assert summary.accuracy == summary.accuracy_seed_mean == pytest.approx(0.8)
    assert summary.accuracy_seed_std == pytest.approx(0.05)
    assert summary.delta_accuracy == pytest.approx(0.8 - 0.25)
    tested = seed_aware_difference(base, tuned, resamples=SETTINGS.bootstrap_resamples)
    assert (summary.delta_ci_low, summary.delta_ci_high) == (tested.ci_low, tested.ci_high)
    assert summary.seed_aware_p == tested.p_value and summary.significant == tested.significant is True
    assert summary.accuracy_ci_low < 0.8 < summary.accuracy_ci_high and pd.isna(summary.macro_f1_ci_low)
    assert table.repeat_of[table.model.isin(GROUP)].eq("lora").all()
    assert table.repeat_of[table.model == "other"].isna().all()
    columns = list(table.columns)
    assert columns[columns.index("delta_accuracy") + 1 :][:3] == ["accuracy_seed_mean", "accuracy_seed_std", "seeds"]

    report = render(task, table, pd.DataFrame())
    notes = report.markdown.split("## How to read these numbers")[1]
    assert "one seed" in notes and "lora (3 seeds)" in notes and "resamples seeds, then the same test examples" in notes
    assert "seed_aware_p" in report.markdown.split("\n\n")[1], "the summary table shows the seed-aware p-value"
    text = format_summary({"classification": table}, {"classification": "accuracy"})
    assert "accuracy ±sd [interval]" in text
    line = next(line for line in text.splitlines() if "finetuned-3-seeds" in line)
    assert re.search(r"0\.800 ±0\.050 \[0\.\d\d, 0\.\d\d\]\s+\+0\.550\s+yes", line), line


def test_a_group_is_summarized_from_two_seeds_on_and_named_once_while_none_is_evaluated(task, evaluated):
    _, _, cells = evaluated
    text = lambda table: format_summary({"classification": table}, {"classification": "accuracy"})  # noqa: E731
    nothing = compare(task, {"other": cells["other"]})
    assert "not evaluated yet: lora (3 seeds)" in text(nothing)
    one = compare(task, {model: cells[model] for model in ("lora", "other")})
    assert not one.variant.str.endswith("-seeds").any()
    assert "not evaluated yet: lora.seed1, lora.seed2" in text(one)
    two = compare(task, {model: cells[model] for model in ("lora", "lora.seed2")})
    assert two.loc[two.variant == "finetuned-2-seeds", "accuracy_seed_mean"].item() == pytest.approx(0.8)


def test_seeds_scored_on_different_examples_are_refused(task, evaluated):
    _, _, cells = evaluated
    table, predictions = cells["lora.seed1"]
    shifted = predictions.assign(id=predictions.id + (predictions.variant == "finetuned") * 1)
    with pytest.raises(ValueError, match=r"seed repeats of 'lora' .* not all scored on the same test examples"):
        compare(task, {**cells, "lora.seed1": (table, shifted)})


def test_the_leaderboard_ranks_a_repeat_group_once_by_its_mean_over_seeds(task, evaluated):
    from ftassets.evaluation.evaluate import leaderboard

    _, _, cells = evaluated
    _, board = leaderboard({"classification": compare(task, cells)}, {"classification": "accuracy"})
    assert list(board.model) == ["lora", "other"], board
    assert board.set_index("model").loc["lora", "classification"] == pytest.approx(0.8), "the mean, not seed 0's 0.75"


def test_each_gguf_variant_of_the_seeds_gets_its_own_summary_row(task, evaluated):
    """The exported files of the three trainings, one right answer fewer each, summarized as ``gguf-q8_0-3-seeds``
    after the fine-tunes' row, against the same base; the leaderboard still ranks the group by its fine-tunes."""
    from ftassets.evaluation.evaluate import leaderboard

    base, tuned, cells = evaluated
    gguf = tuned.copy()
    for scores in gguf:
        scores[np.flatnonzero(scores)[0]] = 0.0
    with_gguf = {**cells, **{model: cell(model, base, t, g) for model, t, g in zip(GROUP, tuned, gguf)}}
    table = compare(task, with_gguf)
    group_rows = table[table.repeat_of == "lora"]
    assert list(group_rows.variant[-2:]) == ["finetuned-3-seeds", "gguf-q8_0-3-seeds"]
    summary = table[table.variant == "gguf-q8_0-3-seeds"].iloc[0]
    assert summary.model == "lora" and summary.seeds == 3
    assert summary.accuracy == summary.accuracy_seed_mean == pytest.approx(0.8 - 1 / 40)
    assert summary.delta_accuracy == pytest.approx(0.8 - 1 / 40 - 0.25)
    tested = seed_aware_difference(base, gguf, resamples=SETTINGS.bootstrap_resamples)
    assert (summary.delta_ci_low, summary.delta_ci_high, summary.seed_aware_p) == (
        tested.ci_low,
        tested.ci_high,
        tested.p_value,
    )
    _, board = leaderboard({"classification": table}, {"classification": "accuracy"})
    assert board.set_index("model").loc["lora", "classification"] == pytest.approx(0.8)
    notes = render(task, table, pd.DataFrame()).markdown.split("## How to read these numbers")[1]
    assert notes.count("lora (3 seeds)") == 1 and "gguf-<type>-N-seeds" in notes
