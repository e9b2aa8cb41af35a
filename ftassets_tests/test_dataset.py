from pathlib import Path

import datasets
import pandas as pd
import pytest

from ftassets.config import load_project_config
from ftassets.data.datasets import DatasetError, build_splits, check_splits, read_splits, write_splits

PROJECT = load_project_config(Path(__file__).resolve().parents[1] / "configs")


@pytest.mark.parametrize("task_name", sorted(PROJECT.tasks))
def test_every_shipped_task_builds_clean_deterministic_splits(task_name):
    task = PROJECT.tasks[task_name]
    first, second = build_splits(task), build_splits(task)
    assert first == second
    sizes = task.config.sizes
    assert [len(first[s]) for s in ("train", "validation", "test")] == [sizes.train, sizes.validation, sizes.test]
    outcomes = {o.name: o for o in check_splits(task, first)}
    assert all(o.passed for o in outcomes.values()), [o.description for o in outcomes.values() if not o.passed]
    assert set(outcomes) == {
        "no_missing_fields",
        "label_balance",
        "no_duplicate_prompts",
        "no_train_test_contamination",
        "length_statistics",
    }


def checks_of(splits, task_name="classification"):
    return {o.name: o for o in check_splits(PROJECT.tasks[task_name], splits)}


def test_contamination_and_duplicates_are_caught():
    splits = build_splits(PROJECT.tasks["classification"])
    splits["train"].append(dict(splits["test"][0]))
    outcomes = checks_of(splits)
    assert not outcomes["no_train_test_contamination"].passed
    assert outcomes["no_train_test_contamination"].metadata["contaminated"] == 1
    assert not outcomes["no_duplicate_prompts"].passed


def test_missing_fields_and_imbalance_are_caught():
    splits = build_splits(PROJECT.tasks["classification"])
    splits["train"][3] = {**splits["train"][3], "text": "  "}
    for row in splits["test"][:60]:
        row["label"] = "positive"
    outcomes = checks_of(splits)
    assert not outcomes["no_missing_fields"].passed and "text" in outcomes["no_missing_fields"].description
    assert not outcomes["label_balance"].passed and "test/positive" in outcomes["label_balance"].description


def test_splits_round_trip_and_load_with_datasets_and_pandas(tmp_path):
    splits = build_splits(PROJECT.tasks["qa"])
    write_splits(tmp_path, splits)
    assert read_splits(tmp_path) == splits
    loaded = datasets.load_dataset("json", data_files={s: str(tmp_path / f"{s}.jsonl") for s in splits})
    assert loaded["test"].num_rows == len(splits["test"]) and "prompt" in loaded["test"].column_names
    assert len(pd.read_json(tmp_path / "train.jsonl", lines=True)) == len(splits["train"])


def test_sizes_beyond_the_generators_variety_fail_with_the_field():
    task = PROJECT.tasks["sql"]
    too_big = task.config.model_copy(update={"sizes": task.config.sizes.model_copy(update={"train": 50_000})})
    with pytest.raises(DatasetError, match=r"tasks\.sql\.sizes"):
        build_splits(type(task)(task.name, too_big, task.prompt_template, task.primary_metric, task.max_new_tokens))


def test_comparison_shows_missing_entries_and_deltas():
    import math

    from ftassets.evaluation.evaluate import comparison_table

    task = PROJECT.tasks["classification"]
    evaluated = pd.DataFrame(
        [
            {"model": "tiny-lora", "variant": "base", "status": "ok", "accuracy": 0.3, "macro_f1": 0.2},
            {"model": "tiny-lora", "variant": "finetuned", "status": "ok", "accuracy": 0.9, "macro_f1": 0.88},
        ]
    )
    table = comparison_table(task, ["tiny-lora", "tiny-full"], {"tiny-lora": evaluated})
    assert list(zip(table.model, table.variant, table.status)) == [
        ("tiny-lora", "base", "ok"),
        ("tiny-lora", "finetuned", "ok"),
        ("tiny-full", "base", "missing"),
        ("tiny-full", "finetuned", "missing"),
    ]
    assert table.loc[1, "delta_accuracy"] == pytest.approx(0.6)
    assert math.isnan(table.loc[0, "delta_accuracy"]) and math.isnan(table.loc[3, "accuracy"])
