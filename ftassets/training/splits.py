"""Tokenized training splits for a recipe: completion-only SFT rows, plus preference pairs for methods that
train against a reference policy (``needs_reference_model``, e.g. DPO)."""

from __future__ import annotations

from typing import Any

from ftassets.training.recipes import Recipe
from ftassets.training.tokenize import is_conversation_row, prompt_messages, tokenize_conversations, tokenize_examples

TRAINING_SPLITS = ("train", "validation")


def tokenize_for_recipe(
    tokenizer,
    recipe: Recipe,
    splits: dict[str, list[dict[str, Any]]],
    system_prompt: str | None,
    loss_on: str = "all_assistant_turns",
    over_length: str = "truncate",
) -> tuple[dict[str, Any], dict[str, dict]]:
    """The train and validation splits rendered with the tokenizer's chat template (loss on answer tokens only,
    EOS kept), and for a method that needs a reference model the same prompts as preference pairs.

    A split with conversation rows (``messages``, or a row's own ``system`` text) is tokenized as conversations,
    its loss on the assistant turns chosen by ``loss_on`` (the task type's ``loss_on``).

    Rows longer than the recipe's ``max_seq_length`` are counted (``truncated``) and, by the task's
    ``over_length`` policy, cut from the right (``truncate``) or left out (``drop``, counted as
    ``dropped_over_length``); never silently."""
    tokenized, stats = {}, {}
    for name in TRAINING_SPLITS:
        rows = splits[name]
        if any(is_conversation_row(row) for row in rows):
            conversations = [
                [*prompt_messages(row, system_prompt), {"role": "assistant", "content": row["answer"]}] for row in rows
            ]
            tokenized[name], stats[name] = tokenize_conversations(
                tokenizer, conversations, recipe.max_seq_length, loss_on
            )
        else:
            tokenized[name], stats[name] = tokenize_examples(
                tokenizer,
                [r["prompt"] for r in rows],
                [r["answer"] for r in rows],
                recipe.max_seq_length,
                system_prompt,
            )
    for name in TRAINING_SPLITS:
        cut = stats[name].pop("truncated_rows")
        if over_length == "drop" and cut:
            dropped = set(cut)
            tokenized[name] = tokenized[name].select([i for i in range(len(tokenized[name])) if i not in dropped])
            stats[name] |= {"dropped_over_length": len(cut), "examples": len(tokenized[name])}
    if recipe.needs_reference_model:
        from ftassets.training.dpo import preference_splits

        preference, preference_stats = preference_splits(
            tokenizer, {name: splits[name] for name in TRAINING_SPLITS}, recipe.max_seq_length, system_prompt
        )
        tokenized |= preference
        stats |= preference_stats
    return tokenized, stats
