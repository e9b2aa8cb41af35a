"""Rows longer than the recipe's max_seq_length are counted, and truncated or dropped as the task says."""

import pytest

from ftassets.training.recipes import parse_recipe
from ftassets.training.splits import tokenize_for_recipe


def splits() -> dict:
    short = [{"prompt": f"color {i}", "answer": "red"} for i in range(4)]
    long = [{"prompt": "word " * 80 + str(i), "answer": "blue"} for i in range(2)]
    return {"train": short + long, "validation": short[:2] + long[:1]}


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_over_length_rows_are_counted_and_truncated_or_dropped(tokenizer, policy):
    recipe = parse_recipe({"method": "lora", "max_seq_length": 48})
    tokenized, stats = tokenize_for_recipe(tokenizer, recipe, splits(), None, over_length=policy)
    assert stats["train"]["truncated"] == 2 and stats["validation"]["truncated"] == 1
    assert "truncated_rows" not in stats["train"], "the indices stay out of the manifest"
    if policy == "drop":
        assert len(tokenized["train"]) == 4 and stats["train"]["dropped_over_length"] == 2
        assert len(tokenized["validation"]) == 2 and stats["validation"]["examples"] == 2
        assert max(len(ids) for ids in tokenized["train"]["input_ids"]) <= 48
    else:
        assert len(tokenized["train"]) == 6 and "dropped_over_length" not in stats["train"]
        assert max(len(ids) for ids in tokenized["train"]["input_ids"]) == 48
