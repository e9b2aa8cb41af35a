"""Token ids and completion-only labels, built from the model's own chat template.

For every example the template renders the prompt alone (ending in the generation prompt) and the
full conversation. The prompt's ids must be a prefix of the conversation's ids; everything after
them is the completion. Labels are -100 on the prompt and equal the ids on the completion up to and
including the first special token the template emits after the answer (the end-of-turn token, so
the model learns to stop). Whatever the template appends after that token is dropped: it is never a
target, and tokens after the last target cannot change the loss of a causal model.

Generation stops on the same end-of-turn token (``stop_token_ids``), so training and inference
agree on where an answer ends for any template, without hard-coded token strings.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset

IGNORE_INDEX = -100


def chat_messages(prompt: str, answer: str | None = None, system_prompt: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def prompt_messages(row: dict, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The conversation a stored row shows the model: its ``messages`` (without a final assistant answer) when it
    has them, else its ``prompt`` as one user turn; the row's own ``system`` text, else ``system_prompt``, leads
    when the conversation has no system turn."""
    system = row.get("system") or system_prompt
    if "messages" not in row:
        return chat_messages(row["prompt"], system_prompt=system)
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    if system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def is_conversation_row(row: dict) -> bool:
    """Whether a stored row needs ``tokenize_conversations`` (its own turns or system text)."""
    return "messages" in row or bool(row.get("system"))


def encode_chats(tokenizer, conversations: list[list[dict[str, str]]], add_generation_prompt: bool) -> list[list[int]]:
    """Token ids of each conversation rendered with the tokenizer's chat template."""
    if not tokenizer.chat_template:
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r} has no chat template; fine-tuning and evaluation need one"
        )
    if not conversations:
        return []
    encoded = tokenizer.apply_chat_template(
        conversations, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
    )
    return [list(ids) for ids in encoded["input_ids"]]


def special_token_ids(tokenizer) -> set[int]:
    added_special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return added_special | set(tokenizer.all_special_ids)


def _split_completion(
    prompt_ids: list[int], ids: list[int], specials: set[int], tokenizer
) -> tuple[list[int], int | None]:
    """The ids after the prompt prefix, and how many of them run through the first special token (None: none)."""
    if ids[: len(prompt_ids)] != prompt_ids:
        common = next((k for k, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))
        raise ValueError(
            "the chat template's prompt with add_generation_prompt=True is not a prefix of the full conversation, "
            f"so the answer cannot be located; they diverge at token {common}: "
            f"prompt continues {tokenizer.decode(prompt_ids[common : common + 8])!r}, "
            f"conversation continues {tokenizer.decode(ids[common : common + 8])!r}"
        )
    completion = ids[len(prompt_ids) :]
    end = next((k + 1 for k, token in enumerate(completion) if token in specials), None)
    return completion, end


def end_of_turn_id(tokenizer) -> int:
    """The special token the chat template emits right after an assistant answer."""
    prompt = encode_chats(tokenizer, [chat_messages("Hi")], add_generation_prompt=True)[0]
    full = encode_chats(tokenizer, [chat_messages("Hi", "Hello")], add_generation_prompt=False)[0]
    completion, end = _split_completion(prompt, full, special_token_ids(tokenizer), tokenizer)
    if end is None:
        raise ValueError(
            f"the chat template emits no special end-of-turn token after the answer: {tokenizer.decode(completion)!r}"
        )
    return completion[end - 1]


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Ids that end generation: the template's end-of-turn token, the tokenizer's eos, the generation config's eos.

    A template without a special end-of-turn token cannot be fine-tuned (``tokenize_examples`` refuses it), but
    its model can still be evaluated, stopping on eos alone.
    """
    try:
        template_end = end_of_turn_id(tokenizer)
    except ValueError:
        template_end = None
    configured = getattr(generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    ids = [template_end, tokenizer.eos_token_id, *configured]
    return list(dict.fromkeys(i for i in ids if i is not None))


def tokenize_examples(
    tokenizer, prompts: list[str], answers: list[str], max_length: int, system_prompt: str | None = None
) -> tuple[Dataset, dict]:
    """Columns ``input_ids`` and ``labels`` (completion-only), truncated to ``max_length`` from the right."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    prompt_ids = encode_chats(tokenizer, [chat_messages(p, system_prompt=system_prompt) for p in prompts], True)
    full_ids = encode_chats(tokenizer, [chat_messages(p, a, system_prompt) for p, a in zip(prompts, answers)], False)
    specials = special_token_ids(tokenizer)

    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    truncated = all_masked = answer_tokens = 0
    cut: list[int] = []
    for index, (prompt, ids, answer) in enumerate(zip(prompt_ids, full_ids, answers)):
        completion, end = _split_completion(prompt, ids, specials, tokenizer)
        if end is None:
            raise ValueError(
                f"example {index}: the chat template emits no special end-of-turn token after the answer, "
                f"so the model could never learn to stop: {tokenizer.decode(completion)!r}"
            )
        if answer.strip() not in tokenizer.decode(completion[:end]):
            raise ValueError(
                f"example {index}: the chat template changed the answer {answer!r} into "
                f"{tokenizer.decode(completion[:end])!r}"
            )
        input_ids = (prompt + completion[:end])[:max_length]
        labels = ([IGNORE_INDEX] * len(prompt) + completion[:end])[:max_length]
        labelled = sum(label != IGNORE_INDEX for label in labels)
        truncated += len(prompt) + end > max_length
        if len(prompt) + end > max_length:
            cut.append(index)
        all_masked += labelled == 0
        answer_tokens += labelled
        rows["input_ids"].append(input_ids)
        rows["labels"].append(labels)

    return Dataset.from_dict(rows), _stats(rows["input_ids"], truncated, all_masked, answer_tokens) | {
        "truncated_rows": cut
    }


def tokenize_conversations(
    tokenizer, conversations: list[list[dict[str, str]]], max_length: int, loss_on: str = "all_assistant_turns"
) -> tuple[Dataset, dict]:
    """Columns ``input_ids`` and ``labels`` of whole conversations (each ending with an assistant turn), truncated
    to ``max_length`` from the right: labels are -100 except on the assistant turns' tokens, each through its
    end-of-turn token; on every assistant turn (``all_assistant_turns``) or only the final one (``last_turn``).

    Each turn is located by rendering the conversation before it with the generation prompt, which must be a
    prefix of the whole conversation's ids (as in ``tokenize_examples``)."""
    if loss_on not in ("all_assistant_turns", "last_turn"):
        raise ValueError(f"loss_on must be 'all_assistant_turns' or 'last_turn', got {loss_on!r}")
    for index, conversation in enumerate(conversations):
        if not conversation or conversation[-1]["role"] != "assistant":
            raise ValueError(f"conversation {index} does not end with an assistant turn")
    turns = [
        [k for k, m in enumerate(conv) if m["role"] == "assistant"][-1 if loss_on == "last_turn" else 0 :]
        for conv in conversations
    ]
    full_ids = encode_chats(tokenizer, conversations, add_generation_prompt=False)
    prefix_ids = iter(encode_chats(tokenizer, [conv[:k] for conv, ks in zip(conversations, turns) for k in ks], True))
    specials = special_token_ids(tokenizer)

    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    truncated = all_masked = answer_tokens = 0
    cut: list[int] = []
    for index, (conversation, ids, assistant_turns) in enumerate(zip(conversations, full_ids, turns)):
        labels = [IGNORE_INDEX] * len(ids)
        last_end = 0
        for k in assistant_turns:
            prefix = next(prefix_ids)
            completion, end = _split_completion(prefix, ids, specials, tokenizer)
            if end is None:
                raise ValueError(
                    f"conversation {index}, turn {k}: the chat template emits no special end-of-turn token after "
                    f"the assistant's answer: {tokenizer.decode(completion)!r}"
                )
            answer = conversation[k]["content"]
            if answer.strip() not in tokenizer.decode(completion[:end]):
                raise ValueError(
                    f"conversation {index}, turn {k}: the chat template changed the answer {answer!r} into "
                    f"{tokenizer.decode(completion[:end])!r}"
                )
            labels[len(prefix) : len(prefix) + end] = completion[:end]
            last_end = len(prefix) + end
        input_ids, labels = ids[:last_end][:max_length], labels[:last_end][:max_length]
        labelled = sum(label != IGNORE_INDEX for label in labels)
        truncated += last_end > max_length
        if last_end > max_length:
            cut.append(index)
        all_masked += labelled == 0
        answer_tokens += labelled
        rows["input_ids"].append(input_ids)
        rows["labels"].append(labels)
    return Dataset.from_dict(rows), _stats(rows["input_ids"], truncated, all_masked, answer_tokens) | {
        "truncated_rows": cut
    }


def _stats(input_ids: list[list[int]], truncated: int, all_masked: int, answer_tokens: int) -> dict:
    lengths = [len(ids) for ids in input_ids]
    return {
        "examples": len(lengths),
        "truncated": truncated,
        "all_masked": all_masked,
        "tokens": sum(lengths),
        "answer_tokens": answer_tokens,
        "max_length": max(lengths, default=0),
        "mean_length": sum(lengths) / len(lengths) if lengths else 0.0,
    }


def save_tokenized(out_dir: Path, splits: dict[str, Dataset]) -> None:
    """One parquet file per split (byte-identical for identical data, unlike save_to_disk's state files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, dataset in splits.items():
        dataset.to_parquet(out_dir / f"{name}.parquet")


def load_tokenized(directory: Path) -> dict[str, Dataset]:
    return {path.stem: Dataset(pq.read_table(path)) for path in sorted(directory.glob("*.parquet"))}
